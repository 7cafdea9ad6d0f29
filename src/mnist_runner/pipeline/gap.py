"""A fair per-epoch overfitting gap.

Keras' per-epoch ``accuracy`` is a running mean over the epoch's batches with
dropout active, so "training minus validation accuracy" built from it can even
be negative. After each epoch ``GapMetrics`` re-evaluates (a sample of) the
training part in inference mode and adds ``train_eval_loss``,
``train_eval_accuracy`` and ``overfit_gap`` to the epoch's logs, where Keras'
progress bar, its History and the MLflow logger all see them.
"""

from __future__ import annotations

import keras
import numpy as np


class GapMetrics(keras.callbacks.Callback):
    """Adds the inference-mode training metrics and the overfitting gap to each epoch's logs."""

    def __init__(self, x: np.ndarray, y_onehot: np.ndarray, batch_size: int):
        super().__init__()
        self.x, self.y, self.batch_size = x, y_onehot, batch_size
        self.batches = None
        if keras.backend.backend() == "tensorflow":
            # Batched once, as Keras keeps its own validation data: on
            # TensorFlow, handing evaluate NumPy arrays costs ~50 ms per call,
            # nearly as much as evaluating the dense net on 10,000 samples.
            # JAX and PyTorch take the arrays as they are. The labels in
            # Keras' float type, as its adapter gives the validation labels:
            # float64 ones (to_categorical's) made TensorFlow trace the
            # evaluation function a second time, ~0.15 s per run for the
            # dense net.
            import tensorflow as tf

            labels = y_onehot.astype(keras.backend.floatx())
            self.batches = tf.data.Dataset.from_tensor_slices((x, labels)).batch(batch_size)

    def on_epoch_end(self, epoch, logs=None):
        if logs is None:
            return
        if self.batches is not None:
            scores = self.model.evaluate(self.batches, verbose=0, return_dict=True)
        else:
            scores = self.model.evaluate(self.x, self.y, batch_size=self.batch_size, verbose=0, return_dict=True)
        logs["train_eval_loss"] = scores["loss"]
        logs["train_eval_accuracy"] = scores["accuracy"]
        logs["overfit_gap"] = overfit_gap(scores["accuracy"], logs["val_accuracy"])


def overfit_gap(train_accuracy: float, val_accuracy: float) -> float:
    """Training accuracy (inference mode) minus validation accuracy: > 0 means overfitting."""
    return float(train_accuracy) - float(val_accuracy)


def eval_sample(x: np.ndarray, y: np.ndarray, size: int | None, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """At most ``size`` training samples (fixed for the whole run) for ``GapMetrics``."""
    if size is None or size >= len(y):
        return x, y
    picked = np.random.default_rng(seed).choice(len(y), size=size, replace=False)
    return x[picked], y[picked]
