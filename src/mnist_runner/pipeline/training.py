"""Training with Keras' ``fit``, and the test set.

Every epoch also gets the fair overfitting gap (``gap.GapMetrics``); a stop
signal stops training between batches (``StopOnSignal``).
"""

from __future__ import annotations

import logging
import sys
import time
from dataclasses import dataclass
from typing import Sequence

import keras
import numpy as np
import pandas as pd

from mnist_runner import signals
from mnist_runner.config.schema import LR_SCHEDULES, OPTIMIZERS
from mnist_runner.errors import RunFailed
from mnist_runner.pipeline.device_data import training_inputs
from mnist_runner.pipeline.gap import GapMetrics, eval_sample
from mnist_runner.tracking import warmup

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FitResult:
    history: pd.DataFrame  # one row per epoch, ``epoch`` counted from 1
    seconds: float


def compile_model(
    model: keras.Model,
    optimizer: str,
    learning_rate: float,
    steps_per_execution: int = 1,
    jit_compile: bool | None = None,
    lr_schedule: str = "constant",
    total_steps: int | None = None,
) -> None:
    """``steps_per_execution`` batches run in one call of the compiled train
    step (the same numbers as one at a time, less Python overhead; see
    ``effective_steps_per_execution``); ``jit_compile=None`` is Keras'
    "auto": XLA on GPUs, not on CPUs (and not on PyTorch). ``lr_schedule``
    (``learning_rate_schedule``) needs the run's ``total_steps``."""
    if optimizer not in OPTIMIZERS:
        raise ValueError(f"trainer.optimizer={optimizer!r}: choose one of {list(OPTIMIZERS)}")
    rate = learning_rate_schedule(lr_schedule, learning_rate, total_steps)
    model.compile(
        optimizer=keras.optimizers.get({"class_name": optimizer, "config": {"learning_rate": rate}}),
        loss="categorical_crossentropy",
        metrics=["accuracy"],
        steps_per_execution=effective_steps_per_execution(steps_per_execution),
        jit_compile="auto" if jit_compile is None else jit_compile,
    )


def learning_rate_schedule(name: str, peak: float, total_steps: int | None):
    """The optimizer's learning rate: ``peak`` itself (``constant``), or for
    ``warmup_cosine`` Keras' ``CosineDecay`` with a linear warm-up from a tenth
    of ``peak`` to ``peak`` over the first quarter of ``total_steps``, then a
    cosine down to a hundredth of it at the last step. It is part of the
    optimizer, so a checkpoint keeps it; a resume with other epochs stretches
    it (``stretch_schedule``)."""
    if name == "constant":
        return peak
    if name != "warmup_cosine":
        raise ValueError(f"trainer.lr_schedule={name!r}: choose one of {list(LR_SCHEDULES)}")
    if not total_steps or total_steps < 1:
        raise ValueError("trainer.lr_schedule=warmup_cosine needs the number of training steps")
    warmup = max(1, total_steps // 4)
    return keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=peak / 10,
        decay_steps=max(1, total_steps - warmup),
        alpha=0.01,  # with a warm-up, a fraction of warmup_target: a hundredth of the peak
        warmup_target=peak,
        warmup_steps=warmup,
    )


def stretch_schedule(model: keras.Model, lr_schedule: str, learning_rate: float, total_steps: int) -> None:
    """A resumed model's learning-rate schedule made to end at ``total_steps``:
    a checkpoint keeps the schedule it was compiled with, which a resume with
    more (or fewer) epochs would otherwise follow past its end (at a hundredth
    of the rate) or stop short of. The optimizer's step count goes on, so the
    schedule continues from the step the run reached."""
    if lr_schedule != "constant":
        model.optimizer.learning_rate = learning_rate_schedule(lr_schedule, learning_rate, total_steps)


def effective_steps_per_execution(requested: int) -> int:
    """What Keras can do of ``trainer.steps_per_execution`` on this backend:
    PyTorch runs one batch per call (Keras refuses more there)."""
    if requested > 1 and keras.backend.backend() == "torch":
        log.info("trainer.steps_per_execution=%d: PyTorch runs one batch per call; using 1", requested)
        return 1
    return requested


class StopOnSignal(keras.callbacks.Callback):
    """Raises a noted stop signal's exception between batches (every
    ``steps_per_execution`` of them) or as training ends, where Keras stops
    cleanly: during training the signal handlers only note it (see ``signals``)."""

    def on_train_batch_end(self, batch, logs=None):
        signals.raise_if_pending()

    def on_test_batch_end(self, batch, logs=None):
        self.on_train_batch_end(batch, logs)

    def on_train_end(self, logs=None):
        self.on_train_batch_end(None, logs)


def fit(
    model: keras.Model,
    train: tuple[np.ndarray, np.ndarray],
    validation: tuple[np.ndarray, np.ndarray],
    *,
    num_classes: int,
    epochs: int,
    batch_size: int,
    eval_batch_size: int,
    seed: int,
    train_eval_samples: int | None,
    early_stopping: bool,
    patience: int,
    callbacks: Sequence[keras.callbacks.Callback] = (),
    initial_epoch: int = 0,
) -> FitResult:
    """Train a compiled model; labels are class indices, one-hot encoded here as
    in the course. Validation and the gap's re-evaluation predict in batches of
    ``eval_batch_size``: the numbers do not depend on it, the speed does.
    ``initial_epoch`` > 0 continues a resumed run."""
    x_train, y_train = train[0], keras.utils.to_categorical(train[1], num_classes)
    x_val, y_val = validation[0], keras.utils.to_categorical(validation[1], num_classes)
    x_eval, y_eval = eval_sample(x_train, y_train, train_eval_samples, seed)
    # GapMetrics first: the callbacks after it (and Keras' own) see the gap.
    # TerminateOnNaN stops at the first non-finite loss it sees (it looks
    # every steps_per_execution batches) instead of training on for the
    # remaining epochs.
    all_callbacks = [
        StopOnSignal(),
        keras.callbacks.TerminateOnNaN(),
        GapMetrics(x_eval, y_eval, eval_batch_size),
        *callbacks,
    ]
    if early_stopping:
        all_callbacks.append(
            keras.callbacks.EarlyStopping(monitor="val_loss", patience=patience, restore_best_weights=True)
        )
    warmup.start()  # the logging after training, readied while it trains
    start = time.perf_counter()
    with signals.stops_deferred():
        history = model.fit(
            **training_inputs(x_train, y_train, batch_size, seed + initial_epoch),
            validation_data=(x_val, y_val),
            epochs=epochs,
            validation_batch_size=eval_batch_size,
            callbacks=all_callbacks,
            initial_epoch=initial_epoch,
            # A live progress bar on a terminal; one line per epoch in logs and CI.
            verbose=1 if sys.stdout.isatty() else 2,
        )
    seconds = time.perf_counter() - start
    frame = history_frame(history.history, first_epoch=initial_epoch + 1)
    if len(frame) and not np.isfinite(frame["loss"].iloc[-1]):
        raise RunFailed(
            f"training diverged: the loss became {frame['loss'].iloc[-1]} in epoch {frame['epoch'].iloc[-1]}; "
            "try a smaller trainer.learning_rate"
        )
    return FitResult(history=frame, seconds=seconds)


@dataclass(frozen=True)
class TestResults:
    metrics: dict[str, float]  # test_loss, test_accuracy
    predicted: np.ndarray  # the predicted class of every test image
    probabilities: np.ndarray  # the model's outputs


def predict_test_set(
    model: keras.Model, x_test: np.ndarray, y_test: np.ndarray, num_classes: int, batch_size: int
) -> TestResults:
    """``test_loss`` and ``test_accuracy`` (as ``model.evaluate`` computes them),
    the predicted classes and the probabilities, from one prediction pass instead of two.

    The model is called batch by batch (``batch_inference``), not through
    ``predict``, which builds and traces a whole prediction loop first."""
    call = batch_inference(model, x_test)
    batches = (call(x_test[start : start + batch_size]) for start in range(0, len(x_test), batch_size))
    probabilities = np.concatenate([np.asarray(keras.ops.convert_to_numpy(batch)) for batch in batches])
    y_onehot = keras.utils.to_categorical(y_test, num_classes)
    loss = keras.ops.convert_to_numpy(keras.losses.get(model.loss)(y_onehot, probabilities))
    predicted = np.argmax(probabilities, axis=1)
    metrics = {"test_loss": float(np.mean(loss)), "test_accuracy": float(np.mean(predicted == y_test))}
    return TestResults(metrics=metrics, predicted=predicted, probabilities=probabilities)


def batch_inference(model: keras.Model, x: np.ndarray):
    """The model's inference call for batches of ``x`` of any size. On
    TensorFlow, one function traced once: cheaper than calling the model
    eagerly even for one pass over 10,000 images, as each eager layer call
    dispatches its ops from Python (MNIST on 2 CPU cores, a new model's first
    pass, batches of 1024: CNN 0.26 s traced against 0.63 s eager, dense
    0.10 s against 0.13 s; outputs the same to the bit). Other backends call
    the model as it is."""
    if keras.backend.backend() != "tensorflow":
        return lambda batch: model(batch, training=False)
    import tensorflow as tf

    batches = tf.TensorSpec([None, *x.shape[1:]], tf.as_dtype(x.dtype))  # any batch size: traced once
    return tf.function(lambda batch: model(batch, training=False), input_signature=[batches])


def evaluate_test_set(
    model: keras.Model, x_test: np.ndarray, y_test: np.ndarray, num_classes: int, batch_size: int
) -> tuple[dict[str, float], np.ndarray]:
    """``predict_test_set``'s metrics and predicted classes."""
    tested = predict_test_set(model, x_test, y_test, num_classes, batch_size)
    return tested.metrics, tested.predicted


def history_frame(history: dict[str, list[float]], first_epoch: int = 1) -> pd.DataFrame:
    """Keras' ``History.history`` as a table, one row per epoch, ``epoch`` from 1."""
    frame = pd.DataFrame(history)
    frame.insert(0, "epoch", np.arange(first_epoch, first_epoch + len(frame)))
    return frame


def summarize_history(history: pd.DataFrame) -> dict[str, float]:
    """Final numbers of a training history: the best validation accuracy, its
    epoch (the first, on ties) and the gap there; the gap at the last epoch;
    and ``overfit_epoch``, where validation loss stopped improving (its minimum)."""
    best = history.loc[history["val_accuracy"].idxmax()]
    return {
        "best_val_accuracy": float(best["val_accuracy"]),
        "best_epoch": int(best["epoch"]),
        "best_epoch_overfit_gap": float(best["overfit_gap"]),
        "final_overfit_gap": float(history["overfit_gap"].iloc[-1]),
        "overfit_epoch": int(history.loc[history["val_loss"].idxmin(), "epoch"]),
    }
