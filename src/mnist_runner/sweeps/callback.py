"""Sweeps as MLflow parent runs, and the gap report at their end.

``SweepCallback`` is a Hydra callback (see conf/config.yaml). Before any job
of a multirun starts it validates every job's config and opens the sweep's
parent run (``parent``), where each job finds it and logs as a child run, or
reopens the parent run of the sweep it continues (``continuation``) with the
plan of what each job does. At the end it builds the overfitting-gap report,
logs it to the parent run, and fails (exit 1) naming every job that did not
finish, with the command that continues the sweep.
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import sys
from pathlib import Path
from typing import Any

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from mnist_runner import signals
from mnist_runner.config import backend, schema
from mnist_runner.errors import EXIT_FAILED, UserError
from mnist_runner.redaction import redact_override
from mnist_runner.sweeps import continuation, job_configs, parent
from mnist_runner.tracking import store, sweep_records

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


def validate_jobs(config: DictConfig, jobs: list[list[str]]) -> list[DictConfig]:
    """Compose and validate every job's config: one bad value fails the sweep
    before any job runs. The configs, as the jobs will see them (kept for
    the launcher: ``job_configs``)."""
    configs = []
    with job_configs.files_read_once():
        for job in jobs:
            try:
                configs.append(job_configs.compose_job(config, job))
                schema.validate(configs[-1])
            except UserError as error:
                raise type(error)(f"sweep job {' '.join(job)}: {error}") from error
    return configs


# Hydra's own overrides a continued sweep runs with again: its launcher and sweeper, with their settings.
LAUNCHER_KEYS = ("hydra/launcher", "hydra.launcher.", "hydra/sweeper", "hydra.sweeper.")


def sweep_record(config: DictConfig, overrides: list[str], n_jobs: int, search: bool) -> dict[str, str]:
    """The parent run's tags that let the sweep be continued: its grid (a
    search: its command line, whose preset holds the search space), but where
    its runs are logged (the continuing command names the store), its
    launcher with its settings, and its number of jobs."""
    given = list(config.hydra.overrides.task) if search else overrides
    # Credentials are masked (the continuing command gives them again).
    grid = [redact_override(o) for o in given if o.split("=", 1)[0].lstrip("+~") != "tracking.uri"]
    launcher = [o for o in config.hydra.overrides.hydra if o.lstrip("+~").startswith(LAUNCHER_KEYS)]
    return {
        sweep_records.TAG_KIND: "search" if search else "grid",
        sweep_records.TAG_OVERRIDES: json.dumps(grid),
        sweep_records.TAG_LAUNCHER: json.dumps(launcher),
        sweep_records.TAG_JOBS: str(n_jobs),
    }


def open_sweep(config: DictConfig, overrides: list[str], swept: list[str], jobs: list[list[str]], configs) -> None:
    """Open the sweep's parent run, new or continued, with its jobs' plan
    (``parent.active()`` then has it)."""
    search = bool(config.hydra.sweeper.get("n_trials"))  # a search runs n_trials jobs, not the grid
    n_jobs = config.hydra.sweeper.get("n_trials") or len(jobs)
    record = sweep_record(config, overrides, n_jobs, search)
    sweep_dir = Path(config.hydra.sweep.dir)
    # Read once, and not passed on to the jobs' processes.
    continues = os.environ.pop(continuation.CONTINUES_ENV, None)
    grid = [(continuation.job_key(cfg), job) for cfg, job in zip(configs, jobs)]
    if not continues:
        info = parent.start_parent_run(config.tracking, overrides, swept, n_jobs, sweep_dir, record)
        if not search:
            parent.with_jobs(info, continuation.plan_jobs(grid, {}))
        return
    if search:  # its study says what is left to do: the same parent run, and the study resumes
        parent.reopen_parent_run(config.tracking, continues, swept, sweep_dir, record)
        return
    # The plan before the parent is reopened: a refused continuation leaves the sweep as it was.
    client = store.open_existing(config.tracking.uri, "tracking.uri")
    experiment_id = client.get_run(continues).info.experiment_id
    plan = continuation.plan_jobs(grid, continuation.runs_by_job(client, experiment_id, continues))
    info = parent.reopen_parent_run(config.tracking, continues, swept, sweep_dir, record)
    parent.with_jobs(info, plan)


class SweepCallback(Callback):
    def on_multirun_start(self, config: DictConfig, config_name: str | None = None, **kwargs: Any) -> None:
        try:
            overrides = sweep_overrides(config)
            swept, jobs = expand_grid(overrides)
            if any(key.lstrip("+~").startswith("tracking.") for key in swept):
                raise UserError("tracking.* cannot be swept: all jobs of a sweep log to one store and experiment")
            configs = validate_jobs(config, jobs)
            backend.check_sweep(backend.sweep_backends(configs), config.hydra.launcher._target_)
            open_sweep(config, overrides, swept, jobs, configs)
        except UserError as error:
            log.error("%s", error)
            sys.exit(error.exit_code)
        except Exception:
            # Hydra would only warn and run every job outside the sweep: no
            # parent run, no report, no continuing it, and exit 0.
            log.exception("the sweep could not be started; no job was run")
            sys.exit(EXIT_FAILED)
        info = parent.active()
        sweep_dir = Path(config.hydra.sweep.dir)
        parent.write_sweep_info(sweep_dir, info)
        if not continuing(info):
            n_jobs = len(info.jobs) or config.hydra.sweeper.get("n_trials")
            log.info("sweep %s: %d jobs, parent MLflow run %s", info.sweep_id, n_jobs, info.parent_run_id)
            return
        counts = continuation.plan_counts(info.jobs)
        log.info(
            "continuing sweep %s (parent MLflow run %s): %d jobs: %d finished (kept as they are), "
            "%d interrupted (continued in their runs), %d failed (run again), %d to run",
            info.sweep_id,
            info.parent_run_id,
            len(info.jobs),
            counts[continuation.DONE],
            counts[continuation.RESUME],
            counts[continuation.RERUN],
            counts[continuation.NEW],
        )
        if counts[continuation.DONE] == len(info.jobs):
            log.info("every job of sweep %s has finished: nothing to train", info.sweep_id)
            self.on_multirun_end(config)
            sys.exit(0)

    def on_job_start(self, config: DictConfig, **kwargs: Any) -> None:
        if "SUBMITIT_EXECUTOR" in os.environ:  # a SLURM job: see signals.install_job_handlers
            signals.install_job_handlers()
        elif parent.active() is None:  # a job in a worker process (joblib): stop signals end its run KILLED
            signals.install_handlers()

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        job_configs.forget()
        sweep_dir = Path(config.hydra.sweep.dir)
        info = parent.read_sweep_info(sweep_dir)
        if info is None:
            return
        parent.wait_for_finishing_job()
        # Every job has returned: a run still RUNNING lost its process (the OOM killer, a lost node).
        parent.close_children(info, "process died: its job ended without closing the run")
        if not info.jobs:  # a search: its study says what is left to do
            parent.finish_parent_run(info, sweep_dir / "report")
            return
        import mlflow

        client = mlflow.MlflowClient(tracking_uri=info.tracking_uri)
        outcomes = continuation.outcomes(
            info.jobs, continuation.runs_by_job(client, info.experiment_id, info.parent_run_id)
        )
        unfinished = [outcome for outcome in outcomes if outcome.status != "FINISHED"]
        if not unfinished:
            parent.finish_parent_run(info, sweep_dir / "report")
            return
        status = "KILLED" if all(outcome.status == "KILLED" for outcome in unfinished) else "FAILED"
        reason = f"{len(unfinished)} of {len(outcomes)} jobs did not finish"
        parent.finish_parent_run(info, sweep_dir / "report", status, reason)
        lines = [
            f"  {shown_job(outcome.overrides)}: {outcome.status or 'no run'}"
            + (f" ({outcome.reason})" if outcome.reason else "")
            for outcome in unfinished
        ]
        log.error(
            "sweep %s: %s:\n%s\ncontinue it (finished jobs are kept): %s",
            info.sweep_id,
            reason,
            "\n".join(lines),
            continuation.continue_command(info.parent_run_id, info.tracking_uri),
        )
        sys.exit(EXIT_FAILED)


def shown_job(overrides: list[str]) -> str:
    """A job's overrides as a person tells jobs apart: without where its runs
    are logged and its checkpoints go (the same for every job)."""
    where = ("tracking.", "trainer.checkpoint_dir", "data.path")
    return " ".join(o for o in overrides if not o.lstrip("+~").startswith(where))


def continuing(info: parent.SweepInfo) -> bool:
    """Whether the sweep continues an earlier one: some of its jobs have runs."""
    return bool(info.jobs) and any(step["action"] != continuation.NEW for step in info.jobs.values())
