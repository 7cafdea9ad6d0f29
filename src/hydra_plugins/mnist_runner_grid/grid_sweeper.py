"""The grid sweeper of ``python run.py -m`` (``hydra/sweeper=grid``, the
default): Hydra's basic sweeper, without composing every job twice more.

Before any job runs, the sweep callback composes and validates every job's
config (``mnist_runner.sweeps.callback.validate_jobs``, which also checks the
values, not only that they compose) and keeps them
(``mnist_runner.sweeps.job_configs``). Hydra's basic sweeper then composed
each job once more for the same check (``validate_batch_is_legal``), and its
launcher a third time as it started the job: 4.5 s before the first job of
``make sweep``'s 48 on 2 CPU cores, and ~0.1 s before each. Where the
callback has opened the sweep, the check is skipped, and a launcher that
runs the jobs in this process (Hydra's basic one) is handed the kept
configs; elsewhere (the callback left out of the config, a joblib or SLURM
launcher's worker processes) jobs are composed as in Hydra.
"""

from dataclasses import dataclass
from typing import Sequence

from hydra._internal.core_plugins import basic_sweeper
from hydra._internal.core_plugins.basic_launcher import BasicLauncher
from hydra.core.config_store import ConfigStore
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig

from mnist_runner.sweeps import job_configs, parent


@dataclass
class GridSweeperConf(basic_sweeper.BasicSweeperConf):
    _target_: str = "hydra_plugins.mnist_runner_grid.grid_sweeper.GridSweeper"


ConfigStore.instance().store(group="hydra/sweeper", name="grid", node=GridSweeperConf, provider="mnist_runner")


class GridSweeper(basic_sweeper.BasicSweeper):
    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        super().setup(hydra_context=hydra_context, task_function=task_function, config=config)
        if isinstance(self.launcher, BasicLauncher):  # its jobs run in this process
            self.launcher.hydra_context = HydraContext(
                config_loader=job_configs.Precomposed(hydra_context.config_loader), callbacks=hydra_context.callbacks
            )

    def validate_batch_is_legal(self, batch: Sequence[Sequence[str]]) -> None:
        info = parent.active()
        if info is not None and info.jobs:  # composed and validated by the sweep callback
            return
        super().validate_batch_is_legal(batch)
