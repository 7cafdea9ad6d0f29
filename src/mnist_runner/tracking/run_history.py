"""Reading back what a run logged, for resuming it: its status, config and epochs."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from typing import Any

import mlflow
import yaml
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from mnist_runner.errors import UserError
from mnist_runner.redaction import redact
from mnist_runner.tracking import liveness, store
from mnist_runner.tracking.store import TrackingError


def interrupted_run(uri: str, run_id: str):
    """Run ``run_id`` of the store at ``uri``, if it can be resumed: it ended
    without finishing (opening the store first closes runs whose process died)."""
    try:
        client = store.open_existing(uri, "tracking.uri")
    except TrackingError as error:
        raise TrackingError(f"resume={run_id}: {error}") from error
    try:
        run = client.get_run(run_id)
    except MlflowException as error:
        raise UserError(f"resume={run_id}: no such run in {redact(uri)}") from error
    if run.info.status == "FINISHED":
        raise UserError(f"resume={run_id}: the run finished; there is nothing to resume")
    if run.info.status == "RUNNING":
        where = f"process {run.data.tags.get(liveness.TAG_PID, '?')} on {run.data.tags.get(liveness.TAG_HOST, '?')}"
        raise UserError(f"resume={run_id}: the run is still RUNNING ({where}); stop that process first")
    return run


def logged_epochs(run_id: str) -> set[int]:
    """The epochs whose metrics a run logged."""
    return {m.step for m in MlflowClient().get_metric_history(run_id, "loss")}


def load_run_config(uri: str, run_id: str) -> dict[str, Any]:
    """The resolved config a run logged (``config.yaml``); ``uri`` becomes
    MLflow's tracking URI (``logged_epochs`` reads it)."""
    mlflow.set_tracking_uri(uri)
    try:
        return logged_config(uri, run_id)
    except MlflowException as error:
        raise TrackingError(f"resume={run_id}: no such run with a config.yaml in {redact(uri)} ({error})") from error


def logged_config(uri: str, run_id: str) -> dict[str, Any]:
    """A run's ``config.yaml``, read without MLflow's download progress bar:
    resuming reads it before Keras loads, that is before ``import_keras``
    quiets the console, and a one-file read is not a download to show."""
    with tempfile.TemporaryDirectory() as folder, _progress_bar_off():
        path = mlflow.artifacts.download_artifacts(
            run_id=run_id, artifact_path="config.yaml", dst_path=folder, tracking_uri=uri
        )
        with open(path) as file:
            return yaml.safe_load(file)


@contextlib.contextmanager
def _progress_bar_off() -> Iterator[None]:
    # MLflow reads the setting at each download; it has no argument for it.
    name = "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"
    saved = os.environ.get(name)
    os.environ[name] = "false"
    try:
        yield
    finally:
        if saved is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = saved
