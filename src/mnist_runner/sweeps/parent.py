"""A sweep's parent run: opened before the first job, closed with the report
after the last, and closed KILLED or FAILED, with the report of what
finished, if the sweep stops early.

Jobs find the parent in ``<sweep dir>/mlflow_sweep.json``, in whatever
process or machine the launcher runs them. When the sweep ends, however it
ends, no child run stays RUNNING: the jobs' processes are gone by then (or
are waited for), so a child still RUNNING is closed here.
"""

from __future__ import annotations

import json
import logging
import os
import re
import secrets
import shutil
import subprocess
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path

from mnist_runner.errors import UserError
from mnist_runner.redaction import redact
from mnist_runner.tracking import liveness, provenance, run_state, store, sweep_records

log = logging.getLogger(__name__)

SWEEP_FILE = "mlflow_sweep.json"
# How long a stopped sweep waits for its jobs' processes to close their runs.
STOP_WAIT_SECONDS = 30
# How long a stopped sweep waits for its cancelled SLURM jobs to leave the
# queue: a job still completing (CG) may still write its run's final state.
QUEUE_WAIT_SECONDS = 90
# What MLflow refuses in a param's key (it allows letters, digits, _ - . space : /).
NOT_IN_A_PARAM_KEY = re.compile(r"[^\w\-. :/]")


@dataclass(frozen=True)
class SweepInfo:
    sweep_id: str
    parent_run_id: str
    experiment_id: str
    tracking_uri: str
    swept: list[str]  # the swept config keys, e.g. ["model", "trainer.epochs"]
    sweep_dir: str
    pid: int  # the process that runs the sweep (and its parent run)
    # A grid sweep's jobs by job key (``continuation``): each job's overrides,
    # what it does ("done", "resume", "rerun", "new") and with which run.
    # Empty for a search, whose sweeper picks its trials.
    jobs: dict[str, dict] = field(default_factory=dict)
    # A continued sweep: the status its parent run had before it was reopened.
    reopened_from: str | None = None


@dataclass(frozen=True)
class SweepEnd:
    """How a sweep that stopped early ended."""

    info: SweepInfo
    finished: int  # child runs that finished
    closed: int  # child runs still RUNNING that were closed here
    report_dir: Path | None  # None: no run to report on


_active: SweepInfo | None = None  # the open parent run of this process
_heartbeat: liveness.Heartbeat | None = None


def active() -> SweepInfo | None:
    return _active


def write_sweep_info(sweep_dir: Path, info: SweepInfo) -> None:
    sweep_dir.mkdir(parents=True, exist_ok=True)
    (sweep_dir / SWEEP_FILE).write_text(json.dumps(asdict(info), indent=2))


def read_sweep_info(sweep_dir: Path) -> SweepInfo | None:
    path = sweep_dir / SWEEP_FILE
    return SweepInfo(**json.loads(path.read_text())) if path.is_file() else None


def sweep_params(overrides: list[str]) -> dict[str, str]:
    """The sweep's command-line overrides as the parent run's params,
    ``sweep.<key>``, credentials masked. MLflow refuses Hydra's edit
    prefixes (``+``, ``++``, ``~``) in a param's key: they are dropped, and
    any other character it refuses becomes ``_``. The overrides as written
    are in the parent's tags."""
    params = {}
    for override in overrides:
        key, _, value = override.partition("=")
        key = key.lstrip("+~")
        params[f"sweep.{NOT_IN_A_PARAM_KEY.sub('_', key)}"] = redact(value, key)
    return params


def start_parent_run(
    tracking,
    overrides: list[str],
    swept: list[str],
    n_jobs: int,
    sweep_dir: Path,
    record: dict[str, str] | None = None,
):
    """Create the store and experiment once, before any job, and open the
    parent run; ``tracking`` is the config's ``tracking`` group, ``record``
    the tags that let the sweep be continued (``continuation``)."""
    global _active, _heartbeat
    import mlflow
    from mlflow.entities import Param

    experiment_id = store.connect(tracking.uri, tracking.experiment, tracking.artifact_location)
    sweep_id = f"{datetime.now():%Y%m%d-%H%M%S}-{secrets.token_hex(3)}"
    client = mlflow.MlflowClient()
    tags = {"sweep_id": sweep_id, "sweep_role": "parent", "sweep_keys": json.dumps(swept), **(record or {})}
    run = client.create_run(
        experiment_id,
        run_name=f"sweep-{sweep_id}",
        tags={**tags, **provenance.git_tags(), **liveness.process_tags()},
    )
    params = {**sweep_params(overrides), "sweep.jobs": str(n_jobs)}
    client.log_batch(run.info.run_id, params=[Param(key, value) for key, value in params.items()])
    _active = SweepInfo(sweep_id, run.info.run_id, experiment_id, tracking.uri, swept, str(sweep_dir), os.getpid())
    _heartbeat = liveness.Heartbeat(tracking.uri, run.info.run_id).start()
    return _active


def reopen_parent_run(tracking, parent_run_id: str, swept: list[str], sweep_dir: Path, record: dict[str, str]):
    """Open the parent run of a sweep that is continued, in this process:
    RUNNING again, with this process's liveness tags and the grid it now has
    (``record``). Its params keep what the sweep first ran with."""
    global _active, _heartbeat
    import mlflow

    store.connect(tracking.uri, tracking.experiment, tracking.artifact_location)  # closes runs whose process died
    client = mlflow.MlflowClient()
    run = client.get_run(parent_run_id)
    if run.info.status == "RUNNING":
        where = f"process {run.data.tags.get(liveness.TAG_PID, '?')} on {run.data.tags.get(liveness.TAG_HOST, '?')}"
        raise UserError(f"resume={parent_run_id}: the sweep is still running ({where}); stop it first")
    # The liveness tags first: a reaper elsewhere then sees this process, never the dead one.
    for key, value in {**liveness.process_tags(), "sweep_keys": json.dumps(swept), **record}.items():
        client.set_tag(parent_run_id, key, value)
    if "failure_reason" in run.data.tags:
        client.delete_tag(parent_run_id, "failure_reason")
    client.update_run(parent_run_id, status="RUNNING")
    _active = SweepInfo(
        run.data.tags["sweep_id"],
        parent_run_id,
        run.info.experiment_id,
        tracking.uri,
        swept,
        str(sweep_dir),
        os.getpid(),
        reopened_from=run.info.status,
    )
    _heartbeat = liveness.Heartbeat(tracking.uri, parent_run_id).start()
    return _active


def with_jobs(info: SweepInfo, jobs: dict[str, dict]) -> SweepInfo:
    """``info`` with the grid's plan; it becomes this process's open sweep."""
    global _active
    _active = SweepInfo(**{**asdict(info), "jobs": jobs})
    return _active


@dataclass(frozen=True)
class FinishedJob:
    """A job of a continued sweep whose run had finished: not trained again."""

    run_id: str
    metrics: dict[str, float]


def finished_job(info: SweepInfo, run_id: str) -> FinishedJob:
    import mlflow

    run = mlflow.MlflowClient(tracking_uri=info.tracking_uri).get_run(run_id)
    return FinishedJob(run_id, dict(run.data.metrics))


def mark_superseded(info: SweepInfo, run_id: str) -> None:
    """Mark a job's FAILED run as replaced by the new run the job starts now;
    it stays in the store, and the report leaves it out."""
    import mlflow

    mlflow.MlflowClient(tracking_uri=info.tracking_uri).set_tag(run_id, sweep_records.TAG_SUPERSEDED, "true")


def finish_parent_run(info: SweepInfo, out_dir: Path, status: str = "FINISHED", reason: str | None = None):
    """Close child runs left RUNNING, build the report, log it to the parent
    run and close the parent. The report table, or None when no run finished
    or failed to report on."""
    global _active, _heartbeat
    import mlflow

    from mnist_runner.sweeps.collect import build_report

    if _heartbeat is not None:
        _heartbeat.stop()
        _heartbeat = None
    client = mlflow.MlflowClient(tracking_uri=info.tracking_uri)
    table = None
    try:
        try:
            table = build_report(
                client, info.experiment_id, out_dir, parent_run_id=info.parent_run_id, swept=info.swept
            )
        except LookupError:  # no child run at all
            if status == "FINISHED":
                raise
        if table is not None:
            client.log_artifacts(info.parent_run_id, str(out_dir), "report")
            finished = int((table["status"] == "FINISHED").sum())
            client.log_metric(info.parent_run_id, "jobs_finished", finished)
            client.log_metric(info.parent_run_id, "jobs_failed", len(table) - finished)
            if finished:
                client.log_metric(info.parent_run_id, "best_test_accuracy", float(table["test_acc"].max()))
        if reason:
            client.set_tag(info.parent_run_id, "failure_reason", reason[:5000])
    except BaseException:
        client.set_terminated(info.parent_run_id, "FAILED")
        raise
    finally:
        _active = None
    client.set_terminated(info.parent_run_id, status)
    return table


def discard_active() -> str | None:
    """Remove this process's open parent run, for a sweep that runs no job (a
    search whose study is complete, or refused): it is closed, deleted from
    the experiment, and the sweep's end finds no sweep to report on. Returns
    its run id, None without one. A continued sweep's parent run is not
    removed: it gets back the status it had."""
    info = _active
    if info is None:
        return None
    import mlflow

    sweep_dir = Path(info.sweep_dir)
    if info.reopened_from:
        finish_parent_run(info, sweep_dir / "report", status=info.reopened_from)
        (sweep_dir / SWEEP_FILE).unlink(missing_ok=True)
        return info.parent_run_id
    finish_parent_run(info, sweep_dir / "report", status="KILLED")  # no child: no report; stops the heartbeat
    mlflow.MlflowClient(tracking_uri=info.tracking_uri).delete_run(info.parent_run_id)
    (sweep_dir / SWEEP_FILE).unlink(missing_ok=True)
    return info.parent_run_id


def wait_for_finishing_job() -> None:
    """Wait for the job this process is finishing in a thread (its test set
    and records, ``TrackedRun.finish_in_background``): its training is done,
    so it ends FINISHED, not KILLED by the sweep's end."""
    from mnist_runner.tracking import runs  # MLflow: imported once a sweep is under way

    runs.wait_for_finishing()


def close_children(info: SweepInfo, reason: str, wait_seconds: float = 0) -> int:
    """End the sweep's child runs that are still RUNNING, KILLED with ``reason``,
    once their processes are gone (waiting up to ``wait_seconds`` for that:
    a stopped job may still be closing its own run). A child on another host
    whose job has ended cannot be checked; the sweep's end is taken as its end.
    Returns how many runs were closed here."""
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=info.tracking_uri)
    query = f"tags.mlflow.parentRunId = '{info.parent_run_id}' and attributes.status = 'RUNNING'"
    deadline = time.monotonic() + wait_seconds
    closed = 0
    while True:
        running = client.search_runs([info.experiment_id], query, max_results=10_000)
        waiting = []
        for run in running:
            if job_process_alive(run.data.tags) and time.monotonic() < deadline:
                waiting.append(run)
                continue
            if not run_state.end_if_running(client, run.info.run_id, "KILLED", reason=reason):
                continue  # its job closed it meanwhile: its own status stands
            log.warning(
                "run %s (%s) was left RUNNING by its job: %s; marked KILLED", run.info.run_id, run.info.run_name, reason
            )
            closed += 1
        if not waiting:
            return closed
        time.sleep(0.5)


def job_process_alive(tags: dict[str, str]) -> bool:
    """Whether a child run's process may still close the run itself. A job
    on another machine (a cluster's node) is taken to be alive: cancelled, it
    closes its run itself (signals.JobCancelled)."""
    if liveness.TAG_PID not in tags:
        return False
    return liveness.death_of(tags) is None


def cancel_cluster_jobs(info: SweepInfo) -> list[str]:
    """Cancel the sweep's SLURM jobs (``hydra/launcher=slurm`` keeps each
    job's files in ``<sweep dir>/slurm/<job id>``): stopping the submitting
    process would otherwise leave them running."""
    folder = Path(info.sweep_dir) / "slurm"
    scancel = shutil.which("scancel")
    if scancel is None or not folder.is_dir():
        return []
    jobs = sorted({path.name.split("_")[0] for path in folder.iterdir() if path.name.split("_")[0].isdigit()})
    if jobs:
        subprocess.run([scancel, *jobs], capture_output=True, timeout=60)
        log.info("cancelled SLURM jobs %s", ", ".join(jobs))
    return jobs


def jobs_in_queue(job_ids: list[str]) -> list[str]:
    """Those of ``job_ids`` (job ids, or array job ids as submitit's folders
    name them) that SLURM still lists, as ``<id> <state>``; a job is listed
    until its processes have ended."""
    wanted = set(job_ids)
    # %F: the array job's id (a plain job's own id), %i: the job, %T: its state.
    listed = subprocess.run(["squeue", "-h", "-o", "%F %i %T"], capture_output=True, text=True, timeout=30)
    if listed.returncode != 0:
        raise OSError(f"squeue failed: {(listed.stderr or listed.stdout).strip()}")
    rows = [line.split() for line in listed.stdout.splitlines()]
    return [f"{row[1]} {row[2]}" for row in rows if len(row) == 3 and row[0] in wanted]


def wait_for_jobs_to_leave(job_ids: list[str], timeout: float = QUEUE_WAIT_SECONDS) -> list[str]:
    """Wait until SLURM no longer lists ``job_ids``, at most ``timeout``
    seconds; the jobs still listed then (``<id> <state>``), or []."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            left = jobs_in_queue(job_ids)
        except (OSError, subprocess.SubprocessError) as error:
            return [f"(the queue could not be read: {error})"]
        if not left or time.monotonic() >= deadline:
            return left
        time.sleep(0.5)


def end_early(status: str, reason: str, child_reason: str) -> SweepEnd | None:
    """Close this process's open sweep that stopped early (Ctrl-C, SIGTERM, a
    launcher that failed): its jobs, their runs (``child_reason`` for those
    left RUNNING), the report of what finished, the parent run with
    ``status`` and ``reason``. None without an open sweep."""
    info = _active
    if info is None:
        return None
    try:
        wait_for_finishing_job()
        cancelled = cancel_cluster_jobs(info)
        if cancelled:
            # Nothing of the sweep may write after the command has ended.
            began = time.monotonic()
            left = wait_for_jobs_to_leave(cancelled)
            if left:
                log.warning(
                    "SLURM jobs still in the queue %.0f s after they were cancelled: %s; they may still "
                    "write to the store",
                    time.monotonic() - began,
                    ", ".join(left),
                )
            else:
                log.info("the cancelled SLURM jobs left the queue after %.1f s", time.monotonic() - began)
        closed = close_children(info, child_reason, STOP_WAIT_SECONDS if cancelled or status == "KILLED" else 5)
        out_dir = Path(info.sweep_dir) / "report"
        table = finish_parent_run(info, out_dir, status, reason)
    except Exception as error:  # the store may be what failed: the parent is reaped later (liveness)
        log.error("the sweep's parent run %s could not be closed: %s", info.parent_run_id, store.store_problem(error))
        return SweepEnd(info, 0, 0, None)
    finished = 0 if table is None else int((table["status"] == "FINISHED").sum())
    return SweepEnd(info, finished, closed, out_dir if table is not None else None)
