"""Reading back what a run logged: its config and per-epoch metrics, for resuming it."""

from __future__ import annotations

from typing import Any

import mlflow
import numpy as np
import pandas as pd
import yaml
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from mnist_runner.redaction import redact
from mnist_runner.tracking.store import TrackingError

EPOCH_METRICS = (
    "loss",
    "accuracy",
    "val_loss",
    "val_accuracy",
    "train_eval_loss",
    "train_eval_accuracy",
    "overfit_gap",
)


def load_run_config(uri: str, run_id: str) -> dict[str, Any]:
    """The resolved config a run logged (``config.yaml``)."""
    mlflow.set_tracking_uri(uri)
    try:
        text = mlflow.artifacts.load_text(f"runs:/{run_id}/config.yaml")
    except MlflowException as error:
        raise TrackingError(f"resume={run_id}: no such run with a config.yaml in {redact(uri)} ({error})") from error
    return yaml.safe_load(text)


def epoch_history(run_id: str, epochs: int) -> pd.DataFrame:
    """A run's per-epoch metrics for its first ``epochs`` epochs, as a history table."""
    client = MlflowClient()
    columns = {}
    for name in EPOCH_METRICS:
        values = {m.step: m.value for m in client.get_metric_history(run_id, name)}
        columns[name] = [values.get(epoch, np.nan) for epoch in range(1, epochs + 1)]
    return pd.DataFrame({"epoch": range(1, epochs + 1), **columns})
