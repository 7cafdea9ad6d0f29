"""Sweeps as MLflow parent runs, and the gap report at their end.

``SweepCallback`` is a Hydra callback (see conf/config.yaml). Before any job
of a multirun starts it validates every job's config, creates the MLflow
store and experiment once (several processes creating a new SQLite store at
once crash), and opens the sweep's parent run; it writes the parent's id to
``<sweep dir>/mlflow_sweep.json``, where each job, in whatever process or
machine the launcher runs it, finds it and logs as a child run. At the end it
builds the overfitting-gap report and logs it to the parent run.
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import secrets
import signal
import sys
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from hydra import compose
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from mnist_runner import errors, schema
from mnist_runner.errors import UserError

log = logging.getLogger(__name__)
SWEEP_FILE = "mlflow_sweep.json"


@dataclass(frozen=True)
class SweepInfo:
    sweep_id: str
    parent_run_id: str
    experiment_id: str
    tracking_uri: str
    swept: list[str]  # the swept config keys, e.g. ["model", "trainer.epochs"]


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
    active: SweepInfo | None = None  # the open parent run, for cli() to close on Ctrl-C

    def on_multirun_start(self, config: DictConfig, config_name: str | None = None, **kwargs: Any) -> None:
        try:
            swept, jobs = expand_grid(sweep_overrides(config))
            if any(key.lstrip("+~").startswith("tracking.") for key in swept):
                raise UserError("tracking.* cannot be swept: all jobs of a sweep log to one store and experiment")
            validate_jobs(config_name or "config", jobs)
            # A search runs n_trials jobs, not the grid of its choices.
            n_jobs = config.hydra.sweeper.get("n_trials") or len(jobs)
            info = start_parent_run(config, swept, n_jobs)
        except UserError as error:
            log.error("%s", error)
            sys.exit(error.exit_code)
        sweep_dir = Path(config.hydra.sweep.dir)
        sweep_dir.mkdir(parents=True, exist_ok=True)
        (sweep_dir / SWEEP_FILE).write_text(json.dumps(asdict(info), indent=2))
        SweepCallback.active = info
        log.info("sweep %s: %d jobs, parent MLflow run %s", info.sweep_id, n_jobs, info.parent_run_id)

    def on_job_start(self, config: DictConfig, **kwargs: Any) -> None:
        # In a submitit job (hydra/launcher=slurm) submitit ignores SIGTERM, so
        # scancel would SIGKILL the job 30 s later: its run left RUNNING, no
        # result for the submitting process, which then waits forever where
        # SLURM has no accounting. Make SIGTERM end the run KILLED instead.
        if "SUBMITIT_EXECUTOR" in os.environ:
            signal.signal(signal.SIGTERM, errors.raise_job_cancelled)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        info = read_sweep_info(Path(config.hydra.sweep.dir))
        if info is None:
            return
        finish_parent_run(info, Path(config.hydra.sweep.dir) / "report")
        SweepCallback.active = None


def read_sweep_info(sweep_dir: Path) -> SweepInfo | None:
    path = sweep_dir / SWEEP_FILE
    return SweepInfo(**json.loads(path.read_text())) if path.is_file() else None


def start_parent_run(config: DictConfig, swept: list[str], n_jobs: int) -> SweepInfo:
    import mlflow

    from mnist_runner import tracking

    track = config.tracking
    experiment_id = tracking.connect(track.uri, track.experiment, track.artifact_location)
    sweep_id = f"{datetime.now():%Y%m%d-%H%M%S}-{secrets.token_hex(3)}"
    client = mlflow.MlflowClient()
    params = {override.split("=", 1)[0]: override.split("=", 1)[1] for override in sweep_overrides(config)}
    run = client.create_run(
        experiment_id,
        run_name=f"sweep-{sweep_id}",
        tags={"sweep_id": sweep_id, "sweep_role": "parent", "sweep_keys": json.dumps(swept), **tracking.git_tags()},
    )
    for key, value in params.items():
        client.log_param(run.info.run_id, f"sweep.{key}", tracking.redact(value, key))
    client.log_param(run.info.run_id, "sweep.jobs", n_jobs)
    return SweepInfo(sweep_id, run.info.run_id, experiment_id, track.uri, swept)


def finish_parent_run(info: SweepInfo, out_dir: Path, status: str = "FINISHED") -> None:
    """Build the report, log it to the parent run and close the parent."""
    import mlflow

    from mnist_runner.compare import build_report

    client = mlflow.MlflowClient(tracking_uri=info.tracking_uri)
    try:
        table = build_report(client, info.experiment_id, out_dir, parent_run_id=info.parent_run_id, swept=info.swept)
        client.log_artifacts(info.parent_run_id, str(out_dir), "report")
        finished = int((table["status"] == "FINISHED").sum())
        client.log_metric(info.parent_run_id, "jobs_finished", finished)
        client.log_metric(info.parent_run_id, "jobs_failed", len(table) - finished)
        if finished:
            client.log_metric(info.parent_run_id, "best_test_accuracy", float(table["test_acc"].max()))
    except BaseException:
        client.set_terminated(info.parent_run_id, "FAILED")
        raise
    client.set_terminated(info.parent_run_id, status)


def abort_active_sweep(status: str) -> None:
    """Close the open parent run (KILLED on Ctrl-C), so none is left RUNNING."""
    info = SweepCallback.active
    if info is None:
        return
    import mlflow

    mlflow.MlflowClient(tracking_uri=info.tracking_uri).set_terminated(info.parent_run_id, status)
    SweepCallback.active = None
