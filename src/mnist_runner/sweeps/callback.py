"""Sweeps as MLflow parent runs, and the gap report at their end.

``SweepCallback`` is a Hydra callback (see conf/config.yaml). Before any job
of a multirun starts it validates every job's config and opens the sweep's
parent run (``parent``), where each job finds it and logs as a child run. At
the end it builds the overfitting-gap report and logs it to the parent run.
"""

from __future__ import annotations

import itertools
import logging
import os
import sys
from pathlib import Path
from typing import Any

from hydra import compose
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from mnist_runner import signals
from mnist_runner.config import backend, schema
from mnist_runner.errors import UserError
from mnist_runner.sweeps import parent

log = logging.getLogger(__name__)


def sweep_overrides(config: DictConfig) -> list[str]:
    """The sweep's overrides: ``hydra.sweeper.params`` (from a preset), then the command line."""
    params = config.hydra.sweeper.get("params") or {}
    return [f"{key}={value}" for key, value in params.items()] + list(config.hydra.overrides.task)


def expand_grid(overrides: list[str]) -> tuple[list[str], list[list[str]]]:
    """The swept keys, and every job's overrides (the Cartesian product of the
    discrete sweeps, ``a=1,2``); a later override of a key replaces an earlier one."""
    choices: dict[str, list[str]] = {}
    swept = []
    for override in OverridesParser.create().parse_overrides(overrides):
        key = override.get_key_element()
        if override.is_discrete_sweep():
            choices[key] = [f"{key}={value}" for value in override.sweep_string_iterator()]
            if key not in swept:
                swept.append(key)
        elif override.is_sweep_override():  # intervals: a search sweeper samples them
            choices.pop(key, None)
            if key not in swept:
                swept.append(key)
        else:
            choices[key] = [f"{key}={override.get_value_element_as_str()}"]
            if key in swept:
                swept.remove(key)
    return swept, [list(job) for job in itertools.product(*choices.values())]


def validate_jobs(config_name: str, jobs: list[list[str]]) -> None:
    """Compose and validate every job's config: one bad value fails the sweep
    before any job runs."""
    for job in jobs:
        try:
            schema.validate(compose(config_name=config_name, overrides=job))
        except UserError as error:
            raise type(error)(f"sweep job {' '.join(job)}: {error}") from error


class SweepCallback(Callback):
    def on_multirun_start(self, config: DictConfig, config_name: str | None = None, **kwargs: Any) -> None:
        try:
            overrides = sweep_overrides(config)
            swept, jobs = expand_grid(overrides)
            if any(key.lstrip("+~").startswith("tracking.") for key in swept):
                raise UserError("tracking.* cannot be swept: all jobs of a sweep log to one store and experiment")
            validate_jobs(config_name or "config", jobs)
            backend.check_sweep(backend.sweep_backends(config_name or "config", jobs), config.hydra.launcher._target_)
            # A search runs n_trials jobs, not the grid of its choices.
            n_jobs = config.hydra.sweeper.get("n_trials") or len(jobs)
            sweep_params = dict(override.split("=", 1) for override in overrides)
            sweep_dir = Path(config.hydra.sweep.dir)
            info = parent.start_parent_run(config.tracking, sweep_params, swept, n_jobs, sweep_dir)
        except UserError as error:
            log.error("%s", error)
            sys.exit(error.exit_code)
        parent.write_sweep_info(sweep_dir, info)
        log.info("sweep %s: %d jobs, parent MLflow run %s", info.sweep_id, n_jobs, info.parent_run_id)

    def on_job_start(self, config: DictConfig, **kwargs: Any) -> None:
        if "SUBMITIT_EXECUTOR" in os.environ:  # a SLURM job: see signals.install_job_handlers
            signals.install_job_handlers()
        elif parent.active() is None:  # a job in a worker process (joblib): stop signals end its run KILLED
            signals.install_handlers()

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        info = parent.read_sweep_info(sweep_dir)
        if info is None:
            return
        # Every job has returned: a run still RUNNING lost its process (the OOM killer, a lost node).
        parent.close_children(info, "process died: its job ended without closing the run")
        parent.finish_parent_run(info, sweep_dir / "report")
