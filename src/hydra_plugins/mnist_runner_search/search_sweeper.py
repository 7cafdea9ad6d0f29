"""Hyperparameter search with Optuna's ask/tell API, as a Hydra sweeper:
``hydra/sweeper=optuna_search``.

It asks Optuna for each trial's values, launches the trial as an ordinary job
through Hydra's launcher (so it is an MLflow child run of the sweep like any
other), and tells Optuna the result. The study lives in SQLite, so a search
that was interrupted resumes where it stopped; trials report validation
accuracy per epoch and hopeless ones are pruned (``mnist_runner.sweeps.pruning``).

This is the glue Hydra discovers; the settings are in ``config``, the work in
``_impl``. Optuna is imported only when a search runs, so Hydra's plugin scan
stays fast."""

from __future__ import annotations

import logging
from typing import Any, List, Optional

from hydra.core.config_store import ConfigStore
from hydra.core.plugins import Plugins
from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf

from hydra_plugins.mnist_runner_search import _impl as search
from hydra_plugins.mnist_runner_search.config import SearchSweeperConf
from mnist_runner.sweeps.trials import TrialRef

log = logging.getLogger(__name__)

ConfigStore.instance().store(
    group="hydra/sweeper", name="optuna_search", node=SearchSweeperConf, provider="mnist_runner"
)


class SearchSweeper(Sweeper):
    def __init__(self, **conf: Any) -> None:
        self.conf = SearchSweeperConf(**conf)
        self.launcher = None
        self.config: Optional[DictConfig] = None

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.config = config
        self.launcher = Plugins.instance().instantiate_launcher(
            hydra_context=hydra_context, task_function=task_function, config=config
        )
        self.batch_size = int(OmegaConf.select(config, "hydra.launcher.n_jobs", default=1) or 1)

    def sweep(self, arguments: List[str]) -> Any:
        import optuna

        space, fixed = search.search_space(dict(self.conf.params), arguments)
        study = search.make_study(self.conf)
        done = search.counted_trials(study)
        log.info(
            "study %r in %s: %d of %d trials done; searching %s",
            self.conf.study_name,
            self.conf.storage,
            done,
            self.conf.n_trials,
            ", ".join(space),
        )
        warmup = self.conf.pruning_warmup_epochs if search.prunes(self.conf) else None
        job_index = 0
        while done < self.conf.n_trials:
            batch = [study.ask(space) for _ in range(min(self.batch_size, self.conf.n_trials - done))]
            jobs = [
                fixed
                + search.trial_overrides(trial.params)
                + TrialRef(self.conf.storage, self.conf.study_name, trial.number, warmup).overrides()
                for trial in batch
            ]
            returns = self.launcher.launch(jobs, initial_job_idx=job_index)
            job_index += len(jobs)
            for trial, job in zip(batch, returns):
                result = job.return_value  # the job's metrics; None if it failed
                values = search.objective_values(self.conf.objective, result)
                if values is not None:
                    study.tell(trial, values)
                elif result and result.get("pruned"):
                    study.tell(trial, state=optuna.trial.TrialState.PRUNED)
                else:
                    study.tell(trial, state=optuna.trial.TrialState.FAIL)
            done = search.counted_trials(study)
        best = study.best_trials
        if best:
            log.info("best trial %d: %s with %s", best[0].number, best[0].params, best[0].values)
        return best
