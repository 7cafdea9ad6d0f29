"""MLflow at the edge: the store, one run per job, and what gets logged.

Everything MLflow-specific of a run is here; ``experiment`` calls these
functions in order and never touches MLflow itself.
"""

from __future__ import annotations

import contextlib
import signal
import subprocess
import threading
from pathlib import Path
from typing import Any, Iterator, Mapping

import keras
import mlflow
import numpy as np
import pandas as pd
import yaml
from matplotlib.figure import Figure
from mlflow.entities import RunStatus
from mlflow.exceptions import MlflowException
from mlflow.models import infer_signature
from mlflow.tracking import MlflowClient

from mnist_runner.paths import PROJECT_ROOT

UI_PORT = 5000


def connect(uri: str, experiment: str, artifact_location: str | None) -> str:
    """Point MLflow at ``uri`` and return the id of ``experiment``, created if new.

    A new experiment keeps its artifacts under ``artifact_location``; without
    one MLflow would put them in ``./mlruns`` of whatever the cwd is.
    """
    if uri.startswith("sqlite:///"):
        Path(uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    mlflow.set_tracking_uri(uri)
    client = MlflowClient()
    found = client.get_experiment_by_name(experiment)
    if found is not None:
        return found.experiment_id
    location = Path(artifact_location).resolve().as_uri() if artifact_location else None
    try:
        return client.create_experiment(experiment, artifact_location=location)
    except MlflowException:  # created by a concurrent job in the meantime
        return client.get_experiment_by_name(experiment).experiment_id


@contextlib.contextmanager
def tracked_run(experiment_id: str, run_name: str, tags: Mapping[str, str]) -> Iterator[mlflow.ActiveRun]:
    """One MLflow run, always closed: FINISHED, FAILED on an error, KILLED on
    Ctrl-C or SIGTERM (which would otherwise end Python without cleanup)."""
    previous = None
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        with mlflow.start_run(experiment_id=experiment_id, run_name=run_name, tags=dict(tags)) as run:
            try:
                yield run
            except KeyboardInterrupt:
                mlflow.end_run(RunStatus.to_string(RunStatus.KILLED))
                raise
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _interrupt(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")


class EpochLogger(keras.callbacks.Callback):
    """Logs every number of an epoch's logs as an MLflow metric with ``step=epoch``
    (counted from 1, as Keras prints it)."""

    def on_epoch_end(self, epoch, logs=None):
        mlflow.log_metrics({key: float(value) for key, value in (logs or {}).items()}, step=epoch + 1)


def log_config(resolved: dict[str, Any], flat_params: dict[str, Any], overrides: list[str]) -> None:
    """The config as params (dotted keys) and as ``config.yaml``, with the overrides."""
    mlflow.log_params(flat_params)
    mlflow.log_text(yaml.safe_dump(resolved, sort_keys=False), "config.yaml")
    mlflow.log_text(yaml.safe_dump(list(overrides)), "overrides.yaml")


def log_derived(values: Mapping[str, Any]) -> None:
    """Params computed during the run (sizes, fitted preprocessing), not set by config."""
    mlflow.log_params(dict(values))


def log_results(
    metrics: Mapping[str, float], history: pd.DataFrame, figures: Mapping[str, Figure]
) -> None:
    mlflow.log_metrics(dict(metrics))
    mlflow.log_text(history.to_csv(index=False), "history.csv")
    for name, figure in figures.items():
        mlflow.log_figure(figure, f"plots/{name}.png")


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


def ui_hint(uri: str, experiment_id: str, run_id: str) -> str:
    """How to open this run in the MLflow UI."""
    page = f"#/experiments/{experiment_id}/runs/{run_id}"
    if uri.startswith("http"):
        return f"{uri.rstrip('/')}/{page}"
    default = f"sqlite:///{PROJECT_ROOT / 'runs' / 'mlflow.db'}"
    command = "make ui" if uri == default else f"mlflow ui --backend-store-uri {uri} --host 127.0.0.1"
    return f"{command}, then http://127.0.0.1:{UI_PORT}/{page}"
