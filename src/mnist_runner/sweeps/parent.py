"""A sweep's parent run: opened before the first job, closed with the report
after the last, and closed KILLED or FAILED if the sweep stops early.

Jobs find the parent in ``<sweep dir>/mlflow_sweep.json``, in whatever
process or machine the launcher runs them.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path

from mnist_runner.redaction import redact
from mnist_runner.tracking import provenance, store

SWEEP_FILE = "mlflow_sweep.json"


@dataclass(frozen=True)
class SweepInfo:
    sweep_id: str
    parent_run_id: str
    experiment_id: str
    tracking_uri: str
    swept: list[str]  # the swept config keys, e.g. ["model", "trainer.epochs"]


_active: SweepInfo | None = None  # the open parent run of this process, closed on Ctrl-C


def write_sweep_info(sweep_dir: Path, info: SweepInfo) -> None:
    sweep_dir.mkdir(parents=True, exist_ok=True)
    (sweep_dir / SWEEP_FILE).write_text(json.dumps(asdict(info), indent=2))


def read_sweep_info(sweep_dir: Path) -> SweepInfo | None:
    path = sweep_dir / SWEEP_FILE
    return SweepInfo(**json.loads(path.read_text())) if path.is_file() else None


def start_parent_run(tracking, sweep_params: dict[str, str], swept: list[str], n_jobs: int) -> SweepInfo:
    """Create the store and experiment once (several processes creating a new
    SQLite store at once crash) and open the parent run; ``tracking`` is the
    config's ``tracking`` group."""
    global _active
    import mlflow

    experiment_id = store.connect(tracking.uri, tracking.experiment, tracking.artifact_location)
    sweep_id = f"{datetime.now():%Y%m%d-%H%M%S}-{secrets.token_hex(3)}"
    client = mlflow.MlflowClient()
    run = client.create_run(
        experiment_id,
        run_name=f"sweep-{sweep_id}",
        tags={"sweep_id": sweep_id, "sweep_role": "parent", "sweep_keys": json.dumps(swept), **provenance.git_tags()},
    )
    for key, value in sweep_params.items():
        client.log_param(run.info.run_id, f"sweep.{key}", redact(value, key))
    client.log_param(run.info.run_id, "sweep.jobs", n_jobs)
    _active = SweepInfo(sweep_id, run.info.run_id, experiment_id, tracking.uri, swept)
    return _active


def finish_parent_run(info: SweepInfo, out_dir: Path, status: str = "FINISHED") -> None:
    """Build the report, log it to the parent run and close the parent."""
    global _active
    import mlflow

    from mnist_runner.sweeps.collect import build_report

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
    finally:
        _active = None
    client.set_terminated(info.parent_run_id, status)


def abort_active_sweep(status: str) -> None:
    """Close this process's open parent run (KILLED on Ctrl-C), so none is left RUNNING."""
    global _active
    info, _active = _active, None
    if info is None:
        return
    import mlflow

    mlflow.MlflowClient(tracking_uri=info.tracking_uri).set_terminated(info.parent_run_id, status)
