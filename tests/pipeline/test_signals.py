"""A stop signal (Ctrl-C, SIGTERM, scancel) ends the run KILLED: during
training it is raised between batches, not wherever the signal lands, and a
run ends KILLED even where Python dropped the handler's exception or
TensorFlow turned it into another error.

All three were seen with real signals (signals.py says how); the tests call
the handlers in exactly those places. tests/reliability/test_faults.py and
tests/services/test_slurm.py send real signals to real runs.
"""

import signal

import keras
import numpy as np
import pytest

from mnist_runner import signals
from mnist_runner.pipeline.training import compile_model, fit
from mnist_runner.tracking import runs as tracking
from mnist_runner.tracking import store as tracking_store

# The dropped exceptions are the point of these tests.
pytestmark = pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")


@pytest.fixture(autouse=True)
def no_pending_stop():
    signals.take_pending_stop()
    yield
    signals.take_pending_stop()


class Finalizer:
    """Its ``__del__`` runs the signal handler, as a GC callback would: Python
    prints "Exception ignored" and goes on."""

    def __init__(self, handler):
        self.handler = handler

    def __del__(self):
        self.handler(signal.SIGTERM, None)


def drop_a_signal(handler=signals.raise_interrupted) -> None:
    Finalizer(handler)  # collected at once: the handler's exception is dropped
    assert signals.pending_stop() is not None


@pytest.fixture
def experiment_id(tmp_store):
    """The id of the experiment "signals" in ``tmp_store``, MLflow pointed at it."""
    return tracking_store.connect(tmp_store.uri, "signals", str(tmp_store.artifacts))


def tiny_fit(epochs: int, callbacks=()) -> None:
    keras.utils.set_random_seed(0)
    x = np.random.default_rng(0).integers(0, 255, size=(64, 4, 4)).astype("uint8")
    y = np.arange(64) % 2
    model = keras.Sequential([keras.Input((4, 4)), keras.layers.Flatten(), keras.layers.Dense(2, activation="softmax")])
    compile_model(model, "sgd", 0.01)
    fit(
        model,
        (x[:48], y[:48]),
        (x[48:], y[48:]),
        num_classes=2,
        epochs=epochs,
        batch_size=8,
        eval_batch_size=8,
        seed=0,
        train_eval_samples=None,
        early_stopping=False,
        patience=1,
        callbacks=callbacks,
    )


class SignalAtBatch(keras.callbacks.Callback):
    """Calls the handler as a signal arriving in the middle of training would."""

    def __init__(self, batch: int):
        super().__init__()
        self.batch, self.batches_after = batch, 0

    def on_train_batch_begin(self, batch, logs=None):
        if batch == self.batch and signals.pending_stop() is None:
            signals.raise_interrupted(signal.SIGTERM, None)  # noted, not raised: returns
        elif signals.pending_stop() is not None:
            self.batches_after += 1


@pytest.mark.slow
def test_a_signal_during_training_stops_it_between_batches():
    signalled = SignalAtBatch(2)
    with pytest.raises(signals.Interrupted, match="SIGTERM"):
        tiny_fit(epochs=1000, callbacks=[signalled])
    assert signalled.batches_after == 0  # Keras ran no batch after it


class SignalAtEpochEnd(keras.callbacks.Callback):
    """A signal after the last batch and validation: no batch end comes after it."""

    def on_epoch_end(self, epoch, logs=None):
        signals.raise_interrupted(signal.SIGTERM, None)  # noted, not raised


@pytest.mark.slow
def test_a_signal_after_the_last_batch_stops_as_training_ends():
    with pytest.raises(signals.Interrupted):
        tiny_fit(epochs=1, callbacks=[SignalAtEpochEnd()])


def test_outside_training_and_on_a_second_signal_the_handler_raises_at_once():
    with pytest.raises(signals.Interrupted):
        signals.raise_interrupted(signal.SIGINT, None)
    signals.take_pending_stop()
    with signals.stops_deferred():
        signals.raise_interrupted(signal.SIGINT, None)  # noted
        with pytest.raises(signals.Interrupted):  # Ctrl-C again: stop now
            signals.raise_interrupted(signal.SIGINT, None)


@pytest.mark.slow
def test_a_dropped_signal_stops_training_at_the_next_batch():
    drop_a_signal()
    with pytest.raises(signals.Interrupted, match="SIGTERM"):
        tiny_fit(epochs=1000)  # would take minutes without the stop


def test_a_signal_that_surfaced_as_another_error_ends_the_run_killed(tmp_store, experiment_id):
    with pytest.raises(signals.JobCancelled) as raised:
        with tracking.tracked_run(experiment_id, "cancelled", {}):
            try:
                signals.raise_job_cancelled(signal.SIGTERM, None)
            except signals.JobCancelled:
                raise ValueError("An unusually high number of `tf.data.Iterator.get_next()` calls was detected")  # noqa: B904
    assert isinstance(raised.value.__cause__, ValueError)
    run = tmp_store.only_run("signals")
    assert run.info.status == "KILLED"
    assert run.data.tags["failure_reason"].startswith("JobCancelled: the job was cancelled (SIGTERM")
    assert signals.pending_stop() is None  # the next job of the process starts clean


def test_a_signal_dropped_after_training_still_ends_the_run_killed(tmp_store, experiment_id):
    with pytest.raises(signals.Interrupted):
        with tracking.tracked_run(experiment_id, "interrupted", {}):
            drop_a_signal()
    run = tmp_store.only_run("signals")
    assert (run.info.status, run.data.tags["failure_reason"]) == ("KILLED", "interrupted")


def test_an_ordinary_error_still_fails_the_run(tmp_store, experiment_id):
    with pytest.raises(ValueError):
        with tracking.tracked_run(experiment_id, "failed", {}):
            raise ValueError("bad")
    run = tmp_store.only_run("signals")
    assert (run.info.status, run.data.tags["failure_reason"]) == ("FAILED", "ValueError: bad")
