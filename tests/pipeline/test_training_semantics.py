"""What training promises, checked on real runs through the whole pipeline
(``run_experiment``, in this process, on the digits):

- a resumed run continues from its checkpoint's weights and optimizer state;
- ``trainer.steps_per_execution`` and ``trainer.eval_batch_size`` change
  the speed, not the numbers, also with dropout;
- early stopping keeps the best epoch's weights;
- ``trainer.deterministic=true`` stays with its own job.
"""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from helpers import TempStore
from helpers.store_copies import keep_tracking_uri, store_template

pytestmark = pytest.mark.slow

QUIET = ["tracking.system_metrics=false"]


@pytest.fixture
def store(tmp_path, monkeypatch) -> TempStore:
    """A new store (a copy of a migrated one: seconds saved per test)."""
    keep_tracking_uri(monkeypatch)
    shutil.copyfile(store_template(), tmp_path / "mlflow.db")
    return TempStore(tmp_path)


def fit_spy(monkeypatch):
    """Wraps the pipeline's ``fit``: what each job's model was compiled with,
    and whether TensorFlow's op determinism was on while it trained."""
    from tensorflow.python.framework import config as tf_config

    from mnist_runner.pipeline import experiment

    seen = []
    real_fit = experiment.fit

    def spy(model, *args, **kwargs):
        seen.append(
            {
                "steps_per_execution": model.steps_per_execution,
                "eval_batch_size": kwargs.get("eval_batch_size"),
                "op_determinism": tf_config.is_op_determinism_enabled(),
            }
        )
        return real_fit(model, *args, **kwargs)

    monkeypatch.setattr(experiment, "fit", spy)
    return seen


# -- resume -----------------------------------------------------------------------

EPOCHS, STOP_AFTER = 4, 2


def test_a_resumed_run_continues_from_the_checkpoints_weights_and_optimizer_state(store):
    """Interrupted (as by Ctrl-C) after epoch 2 of 4 and resumed, a run's epoch 3
    is the uninterrupted run's epoch 3, not a fresh model's epoch 1, and it ends
    where the uninterrupted run ends."""
    import keras

    from mnist_runner import signals
    from mnist_runner.config.compose import compose_config
    from mnist_runner.pipeline.experiment import run_experiment
    from mnist_runner.pipeline.resume import plan_resume

    overrides = ["data=digits", f"trainer.epochs={EPOCHS}", "tracking.log_model=false", *QUIET, *store.overrides()]

    class CtrlCAfterEpoch(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if epoch + 1 == STOP_AFTER:  # after the epoch's checkpoint and logging
                raise signals.Interrupted()

    whole = run_experiment(compose_config(overrides))
    with pytest.raises(KeyboardInterrupt):
        run_experiment(compose_config(overrides), callbacks=[CtrlCAfterEpoch()])
    assert signals.pending_stop() is None
    [stopped] = [run for run in store.runs() if run.info.status == "KILLED" and run.info.run_id != whole.run_id]
    run_id = stopped.info.run_id
    assert {p.name for p in (store.checkpoints / run_id).iterdir()} >= {"epoch-2.keras", "epoch-2.json"}

    stored, resume = plan_resume(compose_config(overrides), run_id)
    assert resume.epochs_done == STOP_AFTER
    resumed = run_experiment(stored, resume=resume)

    assert resumed.run_id == run_id
    assert list(resumed.history["epoch"]) == list(range(1, EPOCHS + 1))
    assert store.client().get_run(run_id).data.tags["resumed_from_epoch"] == str(STOP_AFTER)
    mine, theirs = resumed.history.set_index("epoch"), whole.history.set_index("epoch")
    first_new = STOP_AFTER + 1
    # Epoch 3 goes on from epoch 2's weights and optimizer state: what the
    # uninterrupted run did (a new optimizer state alone puts the training
    # loss 17% off here; a fresh model would be back at epoch 1's loss).
    for column in ("loss", "val_loss"):
        assert mine[column][first_new] == pytest.approx(theirs[column][first_new], rel=0.05), column
    assert mine["loss"][first_new] < 0.75 * theirs["loss"][1], "not a fresh model's first epoch"
    # ... and it ends where the uninterrupted run ends.
    assert mine["val_loss"][EPOCHS] == pytest.approx(theirs["val_loss"][EPOCHS], rel=0.05)
    assert resumed.metrics["test_accuracy"] == pytest.approx(whole.metrics["test_accuracy"], abs=0.02)
    assert not (store.checkpoints / run_id).exists()


# -- execution options --------------------------------------------------------------


def test_steps_per_execution_and_eval_batch_size_leave_the_numbers_unchanged(store, monkeypatch):
    """The whole pipeline, with dropout, twice: the defaults (32 batches per
    call, predictions in batches of 1024) and one batch per call with
    predictions in batches of 7. Batches of 16 make 63 per epoch, so 32 per
    call means a full call and a partial one."""
    from mnist_runner import train

    seen = fit_spy(monkeypatch)
    common = [
        "data=digits",
        "trainer.epochs=2",
        "trainer.batch_size=16",
        "model.dropout=0.3",
        "tracking.log_model=false",
        *QUIET,
        *store.overrides(),
    ]
    defaults = train(common)
    one_by_one = train([*common, "trainer.steps_per_execution=1", "trainer.eval_batch_size=7"])

    assert [(s["steps_per_execution"], s["eval_batch_size"]) for s in seen] == [(32, 1024), (1, 7)]
    a, b = defaults.history, one_by_one.history
    for column in ("accuracy", "val_accuracy", "train_eval_accuracy"):
        assert list(a[column]) == list(b[column]), column
    for column in ("loss", "val_loss", "train_eval_loss", "overfit_gap"):
        np.testing.assert_allclose(a[column], b[column], rtol=1e-5, atol=1e-6, err_msg=column)
    assert defaults.metrics["test_accuracy"] == one_by_one.metrics["test_accuracy"]
    assert defaults.metrics["test_loss"] == pytest.approx(one_by_one.metrics["test_loss"], rel=1e-5)
    assert a["loss"].iloc[-1] < a["loss"].iloc[0], "it trained"


# -- early stopping -------------------------------------------------------------------


def test_early_stopping_keeps_the_best_epochs_weights(store):
    """70 training images, a fast learning rate and patience 1: validation loss
    rises after its best epoch and training stops; the logged model has the
    best epoch's validation loss, not the last epoch's."""
    import mlflow

    from mnist_runner import train
    from mnist_runner.datasets.loader import load_dataset
    from mnist_runner.pipeline.splits import split_training_data

    result = train(
        [
            "data=digits",
            "data.train_samples=100",
            "trainer.epochs=30",
            "trainer.batch_size=16",
            "trainer.optimizer=adam",
            "trainer.learning_rate=0.003",
            "trainer.early_stopping=true",
            "trainer.patience=1",
            *QUIET,
            *store.overrides(),
        ]
    )
    val_loss = result.history["val_loss"]
    best, last = float(val_loss.min()), float(val_loss.iloc[-1])
    # The situation under test: stopped early, on a rise in validation loss.
    assert len(val_loss) < 30 and last > best + 0.01, list(val_loss)

    mlflow.set_tracking_uri(store.uri)
    model = mlflow.keras.load_model(f"runs:/{result.run_id}/model")
    split = split_training_data(load_dataset("digits"), 100, 0.3, 42)
    probabilities = model.predict(split.x_val, verbose=0)
    picked = np.clip(probabilities[np.arange(len(split.y_val)), split.y_val], 1e-7, 1.0)
    final_val_loss = float(np.mean(-np.log(picked)))
    assert final_val_loss == pytest.approx(best, rel=1e-4)
    assert abs(final_val_loss - last) > 0.01


# -- determinism stays with its job ------------------------------------------------------


def test_determinism_does_not_leak_into_the_next_job_of_the_process(store, monkeypatch):
    from tensorflow.python.framework import config as tf_config

    from mnist_runner import train

    seen = fit_spy(monkeypatch)
    common = ["data=digits", "trainer.epochs=1", "tracking.log_model=false", *QUIET, *store.overrides()]
    try:
        train([*common, "trainer.deterministic=true"])
        train(common)  # trainer.deterministic=false, the default
    finally:
        tf_config.disable_op_determinism()  # whatever happened, not into the next test
    assert [s["op_determinism"] for s in seen] == [True, False]
