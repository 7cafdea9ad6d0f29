"""What a run records besides its per-epoch metrics: the config, values
derived during the run, the history, the test results and the model."""

from __future__ import annotations

import logging
from typing import Any, Mapping

import keras
import mlflow
import numpy as np
import pandas as pd
import yaml
from mlflow.models import infer_signature

from mnist_runner.redaction import redact, redact_override
from mnist_runner.tracking import figures

log = logging.getLogger(__name__)


def log_config(resolved: dict[str, Any], flat_params: dict[str, Any], overrides: list[str]) -> None:
    """The config as params (dotted keys) and as ``config.yaml``, with the
    overrides; credentials masked."""
    mlflow.log_params({key: redact(value, key) for key, value in flat_params.items()})
    mlflow.log_text(yaml.safe_dump(redact(resolved), sort_keys=False), "config.yaml")
    mlflow.log_text(yaml.safe_dump([redact_override(o) for o in overrides]), "overrides.yaml")


def log_derived(values: Mapping[str, Any]) -> None:
    """Params computed during the run (sizes, fitted preprocessing), not set by config."""
    mlflow.log_params(dict(values))


def log_epochs(rows: list[dict]) -> None:
    """Per-epoch metrics of earlier epochs (``epoch`` counted from 1), as the
    epoch logger would have logged them."""
    for row in rows:
        mlflow.log_metrics({key: float(value) for key, value in row.items() if key != "epoch"}, step=int(row["epoch"]))


def keep_history(history: pd.DataFrame) -> None:
    """``log_history`` for a run that is failing: what the store no longer
    takes is lost, the run's own error is what counts."""
    try:
        log_history(history)
    except Exception as error:  # e.g. the full disk that stopped the run
        log.warning("the history of the completed epochs was not logged: %s", str(error).splitlines()[0])


def log_history(history: pd.DataFrame) -> None:
    """``history.csv`` and ``plots/history.png``: also logged for an interrupted
    run, with the epochs completed so far."""
    mlflow.log_text(history.to_csv(index=False), "history.csv")
    mlflow.log_figure(figures.history_figure(history), "plots/history.png")


def log_test_results(metrics: Mapping[str, float], y_true: np.ndarray, y_pred: np.ndarray, num_classes: int) -> None:
    mlflow.log_metrics(dict(metrics))
    mlflow.log_figure(figures.confusion_matrix_figure(y_true, y_pred, num_classes), "plots/confusion_matrix.png")


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
