"""Per-epoch metrics, logged as Keras reports them."""

from __future__ import annotations

import keras
import mlflow


class EpochLogger(keras.callbacks.Callback):
    """Logs every number of an epoch's logs as an MLflow metric with ``step=epoch``
    (counted from 1, as Keras prints it)."""

    def on_epoch_end(self, epoch, logs=None):
        mlflow.log_metrics({key: float(value) for key, value in (logs or {}).items()}, step=epoch + 1)
