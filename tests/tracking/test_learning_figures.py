"""The pictures that show what a run's network learned (issue 21): which test
images fill ``plots/misclassified.png``, the per-class test accuracy, and
one real CNN run and one dense run on the offline digits that log them.

The choice of images is checked on predictions made up here, where the
answer is known, and then on a real run against the predictions of the model
it logged, loaded back: the grid must show the run's real mistakes.
"""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from helpers import TempStore
from helpers.store_copies import keep_tracking_uri, store_template
from PIL import Image

from mnist_runner.datasets.catalog import class_names
from mnist_runner.tracking import learning_figures, records

DIGITS = [str(label) for label in range(10)]


def one_hot_ish(predicted, confidence, num_classes=10):
    """Probabilities whose argmax is ``predicted``, at ``confidence``."""
    rest = (1 - np.asarray(confidence)) / (num_classes - 1)
    probabilities = np.repeat(rest[:, None], num_classes, axis=1)
    probabilities[np.arange(len(predicted)), predicted] = confidence
    return probabilities


# --- which images, on made-up predictions ----------------------------------------


def test_misclassified_are_the_wrong_ones_most_confident_first():
    y_true = np.array([0, 1, 2, 3, 4, 5, 6])
    y_pred = np.array([0, 7, 2, 9, 4, 1, 8])  # wrong at 1, 3, 5, 6
    confidence = np.array([0.99, 0.40, 0.95, 0.90, 0.97, 0.60, 0.90])
    chosen = learning_figures.misclassified_indices(y_true, y_pred, one_hot_ish(y_pred, confidence))
    # 3 and 6 are equally sure: test-set order between them.
    assert chosen.tolist() == [3, 6, 5, 1]
    assert learning_figures.misclassified_indices(
        y_true, y_pred, one_hot_ish(y_pred, confidence), limit=2
    ).tolist() == [
        3,
        6,
    ]


def test_the_confidence_is_that_of_the_predicted_class_not_of_the_true_one():
    y_true, y_pred = np.array([0, 0]), np.array([1, 2])
    probabilities = np.zeros((2, 10))
    probabilities[0, [0, 1]] = [0.45, 0.55]  # a near miss
    probabilities[1, [0, 2]] = [0.05, 0.95]  # a confident mistake
    assert learning_figures.misclassified_indices(y_true, y_pred, probabilities).tolist() == [1, 0]


def test_no_mistakes_selects_none_and_still_draws_a_picture():
    y = np.arange(10)
    probabilities = one_hot_ish(y, np.full(10, 0.9))
    chosen = learning_figures.misclassified_indices(y, y, probabilities)
    assert chosen.size == 0
    figure = learning_figures.misclassified_figure(np.zeros((10, 8, 8)), y, y, probabilities, chosen, DIGITS, 16)
    assert "no mistakes on the 10 test images" in [text.get_text() for text in figure.texts]


def test_the_grid_labels_each_image_with_its_true_and_predicted_class():
    y_true = np.array([3, 5, 5])
    y_pred = np.array([8, 5, 6])
    probabilities = one_hot_ish(y_pred, np.array([0.997, 0.9, 0.5]))
    chosen = learning_figures.misclassified_indices(y_true, y_pred, probabilities)
    figure = learning_figures.misclassified_figure(
        np.zeros((3, 28, 28)), y_true, y_pred, probabilities, chosen, class_names("fashion_mnist"), 255
    )
    labels = [text.get_text() for text in figure.axes[0].texts]
    assert figure.get_suptitle().startswith("all 2 mistakes on 3 test images, the surest first\n")
    # 99.7% is rounded down: a mistake never reads as 100% sure.
    assert labels == ["Dress \u2192 Bag\n99% sure", "Sandal \u2192 Shirt\n50% sure"]


def test_the_grid_draws_the_chosen_images_in_their_order():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 17, (40, 8, 8))
    y_true = rng.integers(0, 10, 40)
    y_pred = (y_true + rng.integers(0, 2, 40)) % 10  # about half wrong
    probabilities = one_hot_ish(y_pred, rng.uniform(0.2, 1.0, 40))
    chosen = learning_figures.misclassified_indices(y_true, y_pred, probabilities, limit=7)
    figure = learning_figures.misclassified_figure(images, y_true, y_pred, probabilities, chosen, DIGITS, 16)
    drawn = figure.axes[0].images[0].get_array()
    grid = learning_figures.misclassified_grid(7, (8, 8))
    (height, width), band, margin = grid.cell, grid.band, grid.margin
    assert drawn.shape == (2 * height, 5 * width)
    for i, index in enumerate(chosen):
        top, left = (i // 5) * height + band, (i % 5) * width + margin
        np.testing.assert_array_equal(drawn[top : top + 8, left : left + 8], images[index], err_msg=f"cell {i}")
    assert drawn[height + band :, 2 * width :].mask.all(), "cells after the last image stay empty"


def test_feature_maps_show_the_first_image_of_each_of_the_first_classes():
    y_true = np.array([3, 1, 1, 0, 2, 3, 0])
    assert learning_figures.feature_map_indices(y_true, 3).tolist() == [3, 1, 4]


def test_class_accuracy_counts_each_class_and_its_most_frequent_mistake():
    y_true = np.array([0, 0, 0, 0, 1, 1, 2])
    y_pred = np.array([0, 0, 2, 2, 1, 1, 0])
    table = learning_figures.class_accuracy(y_true, y_pred, ["zero", "one", "two", "three"])
    assert table["images"].tolist() == [4, 2, 1, 0]
    assert table["correct"].tolist() == [2, 2, 0, 0]
    assert table["accuracy"].tolist()[:3] == [0.5, 1.0, 0.0] and np.isnan(table["accuracy"].iloc[3])
    assert table["mistaken_for"].tolist() == ["two", "", "zero", ""]
    # No test image of class 3, so no metric for it (MLflow would chart a NaN).
    assert records.class_metrics(table) == {
        "test_class_accuracy/0": 0.5,
        "test_class_accuracy/1": 1.0,
        "test_class_accuracy/2": 0.0,
    }


def test_class_names_are_the_data_sets_or_the_digits():
    assert class_names("fashion_mnist")[9] == "Ankle boot"
    assert class_names("mnist") == class_names("digits") == DIGITS


# --- a real run ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def digits_runs(tmp_path_factory):
    """A CNN (2 epochs: about two thirds right, so more than a grid of mistakes)
    and a dense model (1 epoch) on the digits, into one store; what the CNN
    run handed to each of its three pictures, and how often its test images
    were predicted (by the run's pass over them, or Keras' predict)."""
    import keras

    from mnist_runner import train
    from mnist_runner.datasets.loader import load_dataset
    from mnist_runner.pipeline import experiment

    store = TempStore(tmp_path_factory.mktemp("learning_figures"))
    shutil.copyfile(store_template(), store.db)
    x_test = load_dataset("digits").x_test
    seen, predicted = {}, []
    real_grid, real_filters, real_maps, real_predict = (
        learning_figures.misclassified_figure,
        learning_figures.filters_figure,
        learning_figures.feature_maps_figure,
        keras.Model.predict,
    )
    real_test_set = experiment.predict_test_set

    def grid(*args):
        seen["grid"] = args
        return real_grid(*args)

    def filters(*args):
        seen["filters"] = args
        return real_filters(*args)

    def maps(*args):
        seen["maps"] = args
        return real_maps(*args)

    def counted(x):
        if len(x) == len(x_test) and np.array_equal(x, x_test):
            predicted.append(len(x))

    def predict(self, x, *args, **kwargs):
        counted(x)
        return real_predict(self, x, *args, **kwargs)

    def predict_test_set(model, x, *args, **kwargs):  # the run's own pass over the test set
        counted(x)
        return real_test_set(model, x, *args, **kwargs)

    common = ["data=digits", "tracking.system_metrics=false", *store.overrides()]
    with pytest.MonkeyPatch.context() as patch:
        keep_tracking_uri(patch)
        patch.setattr(learning_figures, "misclassified_figure", grid)
        patch.setattr(learning_figures, "filters_figure", filters)
        patch.setattr(learning_figures, "feature_maps_figure", maps)
        patch.setattr(keras.Model, "predict", predict)
        patch.setattr(experiment, "predict_test_set", predict_test_set)
        cnn = train(["model=cnn", "trainer.epochs=2", *common])
        cnn_seen, cnn_predicted = dict(seen), list(predicted)
        dense = train(["model=dense", "trainer.epochs=1", "tracking.log_model=false", *common])
    return store, cnn, dense, cnn_seen, cnn_predicted


def logged(store, run_id, path, tmp_path):
    import mlflow

    return mlflow.artifacts.download_artifacts(
        run_id=run_id, artifact_path=path, dst_path=str(tmp_path), tracking_uri=store.uri
    )


def logged_model(store, run_id):
    import mlflow

    with pytest.MonkeyPatch.context() as patch:
        keep_tracking_uri(patch)
        mlflow.set_tracking_uri(store.uri)
        return mlflow.keras.load_model(f"runs:/{run_id}/model")


@pytest.mark.slow
def test_the_grid_shows_the_runs_real_mistakes_most_confident_first(digits_runs):
    """Against the logged model's own predictions of the raw test images: every
    image in the grid is one it gets wrong, labelled with its true class and
    the model's prediction, none left out is a surer mistake, and the order is
    by that certainty."""
    from mnist_runner.datasets.loader import load_dataset

    store, cnn, _, seen, _ = digits_runs
    digits = load_dataset("digits")
    images, y_true, y_pred, _, chosen, names, pixel_max = seen["grid"]
    np.testing.assert_array_equal(images, digits.x_test)
    np.testing.assert_array_equal(y_true, digits.y_test)
    assert (names, pixel_max) == (DIGITS, 16)

    probabilities = logged_model(store, cnn.run_id).predict(digits.x_test, verbose=0)
    model_says = probabilities.argmax(axis=1)
    mistakes = np.flatnonzero(model_says != digits.y_test)
    assert len(mistakes) > len(chosen) == learning_figures.MISCLASSIFIED_LIMIT, "the cap must matter"
    np.testing.assert_array_equal(y_pred[chosen], model_says[chosen])
    assert (model_says[chosen] != digits.y_test[chosen]).all()
    sure = probabilities[chosen, model_says[chosen]]
    assert (np.diff(sure) <= 1e-5).all(), sure
    left_out = np.setdiff1d(mistakes, chosen)
    assert probabilities[left_out, model_says[left_out]].max() <= sure.min() + 1e-5
    # The grid is drawn from the predictions the run already had: its test images were predicted once.
    assert digits_runs[4] == [len(digits.x_test)]


@pytest.mark.slow
def test_a_cnn_run_logs_the_three_pictures_and_the_class_accuracies(digits_runs, tmp_path):
    from mnist_runner.datasets.loader import load_dataset

    store, cnn, _, seen, _ = digits_runs
    run = store.client().get_run(cnn.run_id)
    plots = {artifact.path for artifact in store.client().list_artifacts(cnn.run_id, "plots")}
    assert {"plots/misclassified.png", "plots/filters.png", "plots/feature_maps.png"} <= plots
    for name in ("misclassified", "filters", "feature_maps"):
        with Image.open(logged(store, cnn.run_id, f"plots/{name}.png", tmp_path)) as picture:
            assert picture.format == "PNG" and min(picture.size) > 200, (name, picture.size)

    digits = load_dataset("digits")
    model = logged_model(store, cnn.run_id)
    model_says = model.predict(digits.x_test, verbose=0).argmax(axis=1)
    per_class = {f"test_class_accuracy/{k}": float(np.mean(model_says[digits.y_test == k] == k)) for k in range(10)}
    assert {key: run.data.metrics[key] for key in per_class} == pytest.approx(per_class, abs=1e-9)
    # Linked to the logged model and the test data like test_accuracy, for the Models view.
    models = store.client().search_logged_models([run.info.experiment_id])
    (logged_entry,) = [entry for entry in models if entry.source_run_id == cnn.run_id]
    linked = {metric.key: metric for metric in logged_entry.metrics}
    assert all(linked[key].dataset_name == "digits" for key in per_class)
    assert cnn.metrics["test_accuracy"] == pytest.approx(
        sum(per_class[f"test_class_accuracy/{k}"] * np.sum(digits.y_test == k) for k in range(10)) / len(model_says)
    )

    # The filters are the logged model's first convolution.
    import keras

    conv = next(layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D))
    kernel, layer_name = seen["filters"]
    np.testing.assert_allclose(kernel, conv.kernel.numpy(), rtol=1e-6)
    assert layer_name == conv.name and kernel.shape == (3, 3, 1, 32)


@pytest.mark.slow
def test_the_feature_maps_are_the_first_convolution_of_the_test_images(digits_runs):
    """Worked out apart from Keras: the scaled pixels correlated with each
    kernel (a valid convolution), plus its bias, for the first test image of
    classes 0-3."""
    import keras
    from scipy.signal import correlate2d

    from mnist_runner.datasets.loader import load_dataset

    store, cnn, _, seen, _ = digits_runs
    digits = load_dataset("digits")
    images, maps, labels, _, pixel_max = seen["maps"]
    first = [int(np.flatnonzero(digits.y_test == k)[0]) for k in range(4)]
    np.testing.assert_array_equal(images, digits.x_test[first])
    assert (labels, pixel_max) == (["0", "1", "2", "3"], 16)

    model = logged_model(store, cnn.run_id)
    conv = next(layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D))
    kernel, bias = conv.kernel.numpy(), conv.bias.numpy()
    params = store.client().get_run(cnn.run_id).data.params
    scale, offset = (float(params[f"derived.preprocess_{key}"]) for key in ("scale", "offset"))
    assert maps.shape == (4, 6, 6, 32)
    for i, image in enumerate(images):
        for f in range(32):
            expected = correlate2d(image * scale + offset, kernel[:, :, 0, f], mode="valid") + bias[f]
            np.testing.assert_allclose(
                maps[i, ..., f], expected, rtol=1e-4, atol=1e-5, err_msg=f"image {i}, filter {f}"
            )


@pytest.mark.slow
def test_the_model_card_has_a_row_per_class(digits_runs, tmp_path):
    store, cnn, _, _, _ = digits_runs
    with open(logged(store, cnn.run_id, "model_card.md", tmp_path), encoding="utf-8") as file:
        card = file.read()
    assert "## Test accuracy per class" in card
    for k in range(10):
        row = next(line for line in card.splitlines() if line.startswith(f"| {k} "))
        assert f"{cnn.metrics[f'test_class_accuracy/{k}']:.4f}" in row, row


@pytest.mark.slow
def test_a_dense_run_logs_the_misclassified_grid_and_no_convolution_pictures(digits_runs):
    store, _, dense, _, _ = digits_runs
    run = store.client().get_run(dense.run_id)
    assert run.info.status == "FINISHED"
    plots = {artifact.path for artifact in store.client().list_artifacts(dense.run_id, "plots")}
    assert "plots/misclassified.png" in plots
    assert not {"plots/filters.png", "plots/feature_maps.png"} & plots
    assert {f"test_class_accuracy/{k}" for k in range(10)} <= set(run.data.metrics)
