import keras
import numpy as np
import pandas as pd
import pytest
import tensorflow as tf

from mnist_runner.pipeline.gap import GapMetrics, eval_sample, overfit_gap
from mnist_runner.pipeline.preprocess import Rescale, fit_preprocessing
from mnist_runner.pipeline.splits import holdout, stratified_subset
from mnist_runner.pipeline.training import (
    compile_model,
    evaluate_test_set,
    fit,
    learning_rate_schedule,
    stretch_schedule,
    summarize_history,
)


def test_overfit_gap_is_train_minus_validation():
    assert overfit_gap(0.99, 0.97) == pytest.approx(0.02)
    assert overfit_gap(0.90, 0.95) == pytest.approx(-0.05)


def test_summarize_history_known_numbers():
    history = pd.DataFrame(
        {
            "epoch": [1, 2, 3, 4],
            "val_accuracy": [0.90, 0.95, 0.95, 0.93],
            "val_loss": [0.30, 0.20, 0.18, 0.25],
            "overfit_gap": [0.01, 0.02, 0.04, 0.06],
        }
    )
    assert summarize_history(history) == {
        "best_val_accuracy": 0.95,
        "best_epoch": 2,
        "best_epoch_overfit_gap": 0.02,
        "final_overfit_gap": 0.06,
        "overfit_epoch": 3,
    }


@pytest.mark.slow
def test_gap_uses_inference_mode_training_accuracy():
    """With heavy dropout, Keras' running training accuracy differs from the
    model's accuracy on the same data in inference mode; the gap uses the latter."""
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(256, 8)).astype("float32")
    y = keras.utils.to_categorical((x[:, 0] > 0).astype(int), 2)
    model = keras.Sequential(
        [
            keras.Input((8,)),
            keras.layers.Dense(32, activation="relu"),
            keras.layers.Dropout(0.8),
            keras.layers.Dense(2, activation="softmax"),
        ]
    )
    model.compile(optimizer="adam", loss="categorical_crossentropy", metrics=["accuracy"])
    history = model.fit(
        x[:192],
        y[:192],
        validation_data=(x[192:], y[192:]),
        epochs=3,
        verbose=0,
        callbacks=[GapMetrics(x[:192], y[:192], batch_size=64)],
    )
    logs = history.history
    final_train = model.evaluate(x[:192], y[:192], verbose=0, return_dict=True)["accuracy"]
    assert logs["train_eval_accuracy"][-1] == pytest.approx(final_train)
    assert logs["overfit_gap"][-1] == pytest.approx(final_train - logs["val_accuracy"][-1])
    assert logs["train_eval_accuracy"] != logs["accuracy"]


def traces_of_the_evaluation(gap: bool) -> int:
    """How often TensorFlow traced the evaluation step while a small model
    trained 3 epochs with validation, with or without ``GapMetrics``: the
    step's Python code runs once per trace. Sizes as in a run, where no
    part is a multiple of the batch: every batch shape is then unknown."""
    keras.utils.set_random_seed(0)
    x = np.random.default_rng(2).integers(0, 255, size=(256, 4, 4)).astype("uint8")
    y = keras.utils.to_categorical(np.arange(256) % 3, 3)  # float64, as fit's labels are
    model = keras.Sequential([keras.Input((4, 4)), keras.layers.Flatten(), keras.layers.Dense(3, activation="softmax")])
    compile_model(model, "sgd", 0.01)
    traced = []
    step = model.test_step
    model.test_step = lambda data: traced.append(1) or step(data)
    callbacks = [GapMetrics(x[:100], y[:100], batch_size=64)] if gap else []
    model.fit(
        x[:150],
        y[:150],
        validation_data=(x[150:], y[150:]),
        validation_batch_size=64,
        epochs=3,
        verbose=0,
        callbacks=callbacks,
    )
    return len(traced)


@pytest.mark.slow
@pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="tracing is TensorFlow's")
def test_the_gap_evaluates_with_the_validation_s_traced_function():
    """The re-evaluation gives the evaluation the same input types as
    validation, so it adds no trace of its own (one is ~0.15 s per run)."""
    assert traces_of_the_evaluation(gap=True) == traces_of_the_evaluation(gap=False) > 0


@pytest.mark.slow
def test_fit_returns_a_history_per_epoch_counted_from_one():
    keras.utils.set_random_seed(0)
    x = np.random.default_rng(1).integers(0, 255, size=(60, 4, 4)).astype("uint8")
    y = np.arange(60) % 3
    model = keras.Sequential([keras.Input((4, 4)), keras.layers.Flatten(), keras.layers.Dense(3, activation="softmax")])
    compile_model(model, "sgd", 0.01)
    result = fit(
        model,
        (x[:40], y[:40]),
        (x[40:], y[40:]),
        num_classes=3,
        epochs=3,
        batch_size=16,
        eval_batch_size=16,
        seed=0,
        train_eval_samples=10,
        early_stopping=False,
        patience=1,
    )
    assert list(result.history["epoch"]) == [1, 2, 3]
    assert {"loss", "accuracy", "val_loss", "val_accuracy", "train_eval_accuracy", "overfit_gap"} <= set(result.history)


class BatchCalls(keras.callbacks.Callback):
    """Counts the per-batch calls Keras makes in training and in the validation passes."""

    def __init__(self):
        super().__init__()
        self.train = self.validation = 0

    def on_train_batch_end(self, batch, logs=None):
        self.train += 1

    def on_test_batch_end(self, batch, logs=None):
        self.validation += 1


def small_fit(eval_batch_size: int = 16, steps_per_execution: int = 1) -> tuple[pd.DataFrame, BatchCalls]:
    """3 epochs on 200 samples (13 batches of 16), validated on 100."""
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(2)
    x = rng.integers(0, 255, size=(300, 6, 6)).astype("uint8")
    y = (x[:, 0, 0] > 127).astype(int) + (x[:, 1, 1] > 127).astype(int)
    model = keras.Sequential(
        [
            keras.Input((6, 6)),
            keras.layers.Rescaling(1 / 255),
            keras.layers.Flatten(),
            keras.layers.Dense(16, activation="relu"),
            keras.layers.Dense(3, activation="softmax"),
        ]
    )
    compile_model(model, "adam", 0.01, steps_per_execution)
    calls = BatchCalls()
    result = fit(
        model,
        (x[:200], y[:200]),
        (x[200:], y[200:]),
        num_classes=3,
        epochs=3,
        batch_size=16,
        eval_batch_size=eval_batch_size,
        seed=0,
        train_eval_samples=150,
        early_stopping=False,
        patience=1,
        callbacks=[calls],
    )
    return result.history, calls


def assert_same_numbers(a: pd.DataFrame, b: pd.DataFrame) -> None:
    """The same history up to float rounding (summation order)."""
    for column in ("accuracy", "val_accuracy", "train_eval_accuracy"):
        assert list(a[column]) == list(b[column]), column
    for column in ("loss", "val_loss", "train_eval_loss"):
        np.testing.assert_allclose(a[column], b[column], rtol=1e-5, err_msg=column)


@pytest.mark.slow
def test_eval_batch_size_changes_the_speed_not_the_numbers():
    """Validation and the gap's re-evaluation only predict: batches of 7 or
    one batch of 1024 give the same history."""
    (small, small_calls), (large, large_calls) = small_fit(eval_batch_size=7), small_fit(eval_batch_size=1024)
    assert (small_calls.validation, large_calls.validation) == (3 * 15, 3 * 1)  # 100 samples per epoch
    assert_same_numbers(small, large)


@pytest.mark.slow
def test_steps_per_execution_changes_the_speed_not_the_numbers():
    """Several batches per call into TensorFlow: the same batches, in the same
    order, with the same updates; only the per-batch callbacks fire less often."""
    (one, one_calls), (five, five_calls) = small_fit(steps_per_execution=1), small_fit(steps_per_execution=5)
    assert (one_calls.train, five_calls.train) == (3 * 13, 3 * 3)
    assert_same_numbers(one, five)


@pytest.mark.slow
def test_test_set_metrics_are_keras_evaluate_in_one_pass():
    keras.utils.set_random_seed(0)
    x = np.random.default_rng(3).normal(size=(130, 5)).astype("float32")
    y = (x[:, 0] > 0).astype(int) + (x[:, 1] > 0).astype(int)
    model = keras.Sequential([keras.Input((5,)), keras.layers.Dense(3, activation="softmax")])
    compile_model(model, "sgd", 0.1)
    model.fit(x, keras.utils.to_categorical(y, 3), epochs=2, verbose=0)
    metrics, predicted = evaluate_test_set(model, x, y, num_classes=3, batch_size=32)
    expected = model.evaluate(x, keras.utils.to_categorical(y, 3), verbose=0, return_dict=True)
    assert metrics["test_loss"] == pytest.approx(expected["loss"], rel=1e-5)
    assert metrics["test_accuracy"] == pytest.approx(expected["accuracy"])
    assert 0.3 < metrics["test_accuracy"] < 1  # trained, not perfect: a real check on the argmax
    assert (predicted == np.argmax(model.predict(x, verbose=0), axis=1)).all()


@pytest.mark.parametrize("jit_compile", [None, True, False])
def test_jit_compile_none_is_keras_auto(jit_compile):
    """null keeps Keras' "auto": XLA with a GPU, none on CPUs only."""
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(2)])
    compile_model(model, "sgd", 0.01, jit_compile=jit_compile)
    has_gpu = bool(tf.config.list_physical_devices("GPU"))
    assert model.jit_compile is (has_gpu if jit_compile is None else jit_compile)


def test_warmup_cosine_schedule_known_values():
    # 400 steps: warm-up over the first 100 from 0.001 to 0.01, then a cosine
    # over 300 to a hundredth of the peak, 0.0001; halfway down (step 250)
    # it is midway, (0.01 + 0.0001) / 2.
    rate = learning_rate_schedule("warmup_cosine", 0.01, 400)
    values = [float(rate(step)) for step in (0, 50, 100, 250, 400)]
    assert values == pytest.approx([0.001, 0.0055, 0.01, 0.00505, 0.0001], rel=1e-4)
    assert learning_rate_schedule("constant", 0.01, None) == 0.01
    with pytest.raises(ValueError, match="needs the number of training steps"):
        learning_rate_schedule("warmup_cosine", 0.01, None)


def test_the_schedule_is_the_optimizers_and_moves_with_its_steps():
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(2, activation="softmax")])
    compile_model(model, "adam", 0.01, lr_schedule="warmup_cosine", total_steps=8)
    x, y = np.zeros((16, 2), "float32"), keras.utils.to_categorical(np.zeros(16), 2)
    model.fit(x, y, batch_size=2, epochs=1, verbose=0)  # all 8 steps
    assert int(model.optimizer.iterations) == 8
    assert float(model.optimizer.learning_rate) == pytest.approx(0.0001, rel=1e-3)


def test_a_resumed_schedule_survives_the_checkpoint_and_stretches_to_more_epochs(tmp_path):
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(2, activation="softmax")])
    compile_model(model, "adam", 0.01, lr_schedule="warmup_cosine", total_steps=8)
    x, y = np.zeros((16, 2), "float32"), keras.utils.to_categorical(np.zeros(16), 2)
    model.fit(x, y, batch_size=2, epochs=1, verbose=0)  # 8 steps: the schedule's end
    model.save(tmp_path / "checkpoint.keras")
    resumed = keras.models.load_model(tmp_path / "checkpoint.keras")
    assert int(resumed.optimizer.iterations) == 8
    assert float(resumed.optimizer.learning_rate) == pytest.approx(0.0001, rel=1e-3)  # kept as compiled
    # Resumed with twice the epochs: the schedule now ends at step 16, and step 8
    # is where the new one is at that step, not its end.
    stretch_schedule(resumed, "warmup_cosine", 0.01, 16)
    expected = float(learning_rate_schedule("warmup_cosine", 0.01, 16)(8))
    assert float(resumed.optimizer.learning_rate) == pytest.approx(expected) and expected > 0.001
    resumed.fit(x, y, batch_size=2, epochs=1, verbose=0)
    assert float(resumed.optimizer.learning_rate) == pytest.approx(0.0001, rel=1e-3)
    stretch_schedule(resumed, "constant", 0.01, 32)  # nothing to stretch
    assert float(resumed.optimizer.learning_rate) == pytest.approx(0.0001, rel=1e-3)


def test_unknown_optimizer_is_named():
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(2)])
    with pytest.raises(ValueError, match=r"trainer.optimizer='adamm': choose one of .*'adam'"):
        compile_model(model, "adamm", 0.001)


def test_eval_sample_is_fixed_size_and_seeded():
    x, y = np.arange(100), np.arange(100)
    xs, ys = eval_sample(x, y, 10, seed=3)
    assert len(xs) == 10 and (xs == ys).all()
    assert (eval_sample(x, y, 10, seed=3)[0] == xs).all()
    assert len(eval_sample(x, y, None, seed=3)[0]) == 100


def test_holdout_matches_keras_validation_split():
    x, y = np.arange(10), np.arange(10)
    x_train, y_train, x_val, y_val = holdout(x, y, 0.3)
    assert list(x_train) == list(range(7)) and list(x_val) == [7, 8, 9]
    with pytest.raises(ValueError, match="trainer.validation_split=1.5"):
        holdout(x, y, 1.5)


def test_stratified_subset_keeps_class_proportions():
    y = np.array([0] * 800 + [1] * 200)
    x = np.arange(1000)
    x_sub, y_sub = stratified_subset(x, y, 100, seed=0)
    assert len(y_sub) == 100 and (y_sub == 1).sum() == 20
    assert (y[x_sub] == y_sub).all()
    with pytest.raises(ValueError, match="data.train_samples=2000: must be between 1 and 1000"):
        stratified_subset(x, y, 2000, seed=0)


def test_preprocessing_numbers():
    x = np.array([[0, 255], [255, 0]], dtype=np.uint8)
    assert fit_preprocessing("scale", x, 255) == Rescale(1 / 255, 0.0)
    assert fit_preprocessing("none", x, 255) == Rescale(1.0, 0.0)
    standardize = fit_preprocessing("standardize", x, 255)
    scaled = x * standardize.scale + standardize.offset
    assert scaled.mean() == pytest.approx(0.0) and scaled.std() == pytest.approx(1.0)
    with pytest.raises(ValueError, match="preprocess.name='zca'"):
        fit_preprocessing("zca", x, 255)
