"""MLflow at the edge: the store, one run per job, and what gets logged.

Everything MLflow-specific of a run is here; ``experiment`` calls these
functions in order and never touches MLflow itself.
"""

from __future__ import annotations

import base64
import contextlib
import os
import platform
import subprocess
import urllib.error
import urllib.parse
import urllib.request
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any, Iterator, Mapping

import keras
import mlflow
import numpy as np
import pandas as pd
import yaml
from mlflow.entities import RunStatus
from mlflow.exceptions import MlflowException
from mlflow.models import infer_signature
from mlflow.tracking import MlflowClient

from mnist_runner import errors, plots
from mnist_runner.errors import UserError
from mnist_runner.paths import DEFAULT_TRACKING_URI, PROJECT_ROOT
from mnist_runner.redaction import redact, redact_override

UI_PORT = 5000


class TrackingError(UserError):
    """The tracking store cannot be used; the message names the URI."""


def connect(uri: str, experiment: str, artifact_location: str | None) -> str:
    """Point MLflow at ``uri`` and return the id of ``experiment``, created if new.

    Called before any data is loaded, so an unreachable or unwritable store
    fails within seconds. A new experiment keeps its artifacts under
    ``artifact_location``; without one MLflow would put them in ``./mlruns``
    of whatever the cwd is. On a tracking server the server decides (served
    artifacts, ``mlflow-artifacts:``): a local folder there would make every
    client write the artifacts to its own disk, out of the server's reach.
    """
    if uri.startswith(("http://", "https://")):
        check_server(uri)
        artifact_location = None
        if redact(uri) != uri:
            # MLflow's own "View run ... at: <uri>" line would show the password.
            os.environ["MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT"] = "true"
    elif uri.startswith("sqlite:///"):
        try:
            Path(uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise TrackingError(f"tracking.uri={uri}: cannot create the store's folder ({error})") from error
    mlflow.set_tracking_uri(uri)
    client = MlflowClient()
    try:
        found = client.get_experiment_by_name(experiment)
        if found is not None:
            return found.experiment_id
        location = Path(artifact_location).resolve().as_uri() if artifact_location else None
        try:
            return client.create_experiment(experiment, artifact_location=location)
        except MlflowException:  # created by a concurrent job in the meantime
            return client.get_experiment_by_name(experiment).experiment_id
    except MlflowException as error:
        raise TrackingError(f"tracking.uri={redact(uri)}: the MLflow store is not usable ({error})") from error


def check_server(uri: str, timeout: float = 5.0) -> None:
    """Fail fast on a server that is down: MLflow's client would retry for minutes.

    A server behind authentication gets the credentials MLflow itself would
    send (``user:password@`` in the URI, or MLFLOW_TRACKING_USERNAME/PASSWORD
    or MLFLOW_TRACKING_TOKEN); a 401 or 403 still means that a server answers.
    """
    url, authorization = _health_request(uri)
    request = urllib.request.Request(url, headers={"Authorization": authorization} if authorization else {})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            response.read()
    except urllib.error.HTTPError as error:
        if error.code in (401, 403):  # up, but the credentials are missing or wrong: MLflow will say so
            return
        raise _server_down(uri, f"HTTP {error.code} {error.reason}") from error
    except (OSError, ValueError) as error:
        raise _server_down(uri, str(error)) from error


def _health_request(uri: str) -> tuple[str, str | None]:
    """The health URL without any ``user:password@``, and the Authorization header to send."""
    parts = urllib.parse.urlsplit(uri)
    netloc = parts.netloc.rpartition("@")[2]
    url = urllib.parse.urlunsplit((parts.scheme, netloc, parts.path.rstrip("/") + "/health", "", ""))
    username = urllib.parse.unquote(parts.username or "") or os.environ.get("MLFLOW_TRACKING_USERNAME")
    password = urllib.parse.unquote(parts.password or "") or os.environ.get("MLFLOW_TRACKING_PASSWORD")
    token = os.environ.get("MLFLOW_TRACKING_TOKEN")
    if username and password:
        return url, "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()
    if token:
        return url, f"Bearer {token}"
    return url, None


def _server_down(uri: str, reason: str) -> TrackingError:
    return TrackingError(
        f"tracking.uri={redact(uri)}: no MLflow server answers there ({reason}); start one "
        "(`make ui` serves the local store, `make server` a PostgreSQL-backed server) or choose another tracking.uri"
    )


@contextlib.contextmanager
def tracked_run(
    experiment_id: str,
    run_name: str,
    tags: Mapping[str, str],
    parent_run_id: str | None = None,
    resume_run_id: str | None = None,
) -> Iterator[mlflow.ActiveRun]:
    """One MLflow run, always closed: FINISHED; FAILED on an error, with its
    reason as the ``failure_reason`` tag; KILLED on Ctrl-C or SIGTERM (also
    where the signal's exception was dropped or surfaced as another error). In a
    sweep it is a child of the sweep's parent run; ``resume_run_id`` reopens an
    interrupted run."""
    if resume_run_id:
        MlflowClient().delete_tag(resume_run_id, "failure_reason")
        start = {"run_id": resume_run_id}
    else:
        start = {"experiment_id": experiment_id, "run_name": run_name, "parent_run_id": parent_run_id}
    with mlflow.start_run(**start, tags=dict(tags)) as run:
        try:
            yield run
            if errors.pending_stop() is not None:  # a stop signal whose exception Python dropped
                raise errors.pending_stop()
        except BaseException as error:
            # A stop signal is the reason, whatever error it surfaced as.
            reason = errors.take_pending_stop() or error
            end_run_on(reason)
            if reason is not error:
                raise reason from error
            raise


def end_run_on(error: BaseException) -> None:
    """Close the active run for ``error``: KILLED on Ctrl-C or SIGTERM, or with
    the error's own ``run_status`` (a cancelled cluster job, a pruned search
    trial); else ``mlflow.start_run`` ends it FAILED. Its reason becomes the
    ``failure_reason`` tag."""
    if isinstance(error, KeyboardInterrupt):
        mlflow.set_tag("failure_reason", "interrupted")
        mlflow.end_run(RunStatus.to_string(RunStatus.KILLED))
    elif isinstance(error, Exception):
        mlflow.set_tag("failure_reason", f"{type(error).__name__}: {error}"[:5000])
        if hasattr(error, "run_status"):
            mlflow.end_run(error.run_status)


class EpochLogger(keras.callbacks.Callback):
    """Logs every number of an epoch's logs as an MLflow metric with ``step=epoch``
    (counted from 1, as Keras prints it)."""

    def on_epoch_end(self, epoch, logs=None):
        mlflow.log_metrics({key: float(value) for key, value in (logs or {}).items()}, step=epoch + 1)


def log_config(resolved: dict[str, Any], flat_params: dict[str, Any], overrides: list[str]) -> None:
    """The config as params (dotted keys) and as ``config.yaml``, with the
    overrides; credentials masked."""
    mlflow.log_params({key: redact(value, key) for key, value in flat_params.items()})
    mlflow.log_text(yaml.safe_dump(redact(resolved), sort_keys=False), "config.yaml")
    mlflow.log_text(yaml.safe_dump([redact_override(o) for o in overrides]), "overrides.yaml")


def load_run_config(uri: str, run_id: str) -> dict[str, Any]:
    """The resolved config a run logged (``config.yaml``)."""
    mlflow.set_tracking_uri(uri)
    try:
        text = mlflow.artifacts.load_text(f"runs:/{run_id}/config.yaml")
    except MlflowException as error:
        raise TrackingError(f"resume={run_id}: no such run with a config.yaml in {uri} ({error})") from error
    return yaml.safe_load(text)


def epoch_history(run_id: str, epochs: int) -> pd.DataFrame:
    """A run's per-epoch metrics for its first ``epochs`` epochs, as a history table."""
    client = MlflowClient()
    columns = {}
    for name in ("loss", "accuracy", "val_loss", "val_accuracy", "train_eval_loss", "train_eval_accuracy", "overfit_gap"):
        values = {m.step: m.value for m in client.get_metric_history(run_id, name)}
        columns[name] = [values.get(epoch, np.nan) for epoch in range(1, epochs + 1)]
    return pd.DataFrame({"epoch": range(1, epochs + 1), **columns})


def log_derived(values: Mapping[str, Any]) -> None:
    """Params computed during the run (sizes, fitted preprocessing), not set by config."""
    mlflow.log_params(dict(values))


def log_history(history: pd.DataFrame) -> None:
    """``history.csv`` and ``plots/history.png``: also logged for an interrupted
    run, with the epochs completed so far."""
    mlflow.log_text(history.to_csv(index=False), "history.csv")
    mlflow.log_figure(plots.history_figure(history), "plots/history.png")


def log_test_results(
    metrics: Mapping[str, float], y_true: np.ndarray, y_pred: np.ndarray, num_classes: int
) -> None:
    mlflow.log_metrics(dict(metrics))
    mlflow.log_figure(plots.confusion_matrix_figure(y_true, y_pred, num_classes), "plots/confusion_matrix.png")


def log_model(model: keras.Model, example: np.ndarray) -> None:
    """The model in MLflow's Keras flavour, with a signature from real inputs.

    The requirements are given, not inferred: inference re-imports the model
    in a subprocess and takes longer than most trainings here.
    """
    signature = infer_signature(example, model.predict(example, verbose=0))
    mlflow.keras.log_model(
        model,
        name="model",
        signature=signature,
        pip_requirements=[f"keras=={keras.__version__}", f"tensorflow=={_tf_version()}"],
    )


def _tf_version() -> str:
    import tensorflow as tf

    return tf.__version__


def git_tags() -> dict[str, str]:
    """The project's commit and whether the work tree had uncommitted changes."""
    def git(*args: str) -> str:
        done = subprocess.run(["git", "-C", str(PROJECT_ROOT), *args], capture_output=True, text=True)
        return done.stdout.strip() if done.returncode == 0 else ""

    commit = git("rev-parse", "HEAD")
    return {"git_commit": commit or "unknown", "git_dirty": str(bool(git("status", "--porcelain"))).lower()}


def environment_tags() -> dict[str, str]:
    """What software produced the run, to repeat it."""
    tags = {"python_version": platform.python_version()}
    for package in ("tensorflow-cpu", "tensorflow", "keras", "mlflow", "hydra-core", "numpy"):
        try:
            tags[f"version.{package}"] = version(package)
        except PackageNotFoundError:  # e.g. tensorflow when tensorflow-cpu is installed
            continue
    return tags


def ui_hint(uri: str, experiment_id: str, run_id: str) -> str:
    """How to open this run in the MLflow UI."""
    page = f"#/experiments/{experiment_id}/runs/{run_id}"
    if uri.startswith("http"):
        return f"{redact(uri).rstrip('/')}/{page}"
    command = "make ui" if uri == DEFAULT_TRACKING_URI else f"python -m mnist_runner.ui --uri {redact(uri)}"
    return f"{command}, then http://127.0.0.1:{UI_PORT}/{page}"
