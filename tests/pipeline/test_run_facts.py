"""What one real run records, checked against values worked out independently:
the logged model scores the logged ``test_accuracy``, the ``derived.*`` params
of a known config, and the provenance tags (git, versions, data source).

One digits run (dense model, 3 epochs) is trained in this process, through
``train()``, into a temporary store, and shared by the module.
"""

from __future__ import annotations

import os
import platform
import re
import shutil
import subprocess
import sys
from importlib.metadata import version

import numpy as np
import pytest
from helpers import TempStore
from helpers.store_copies import keep_tracking_uri, store_template
from PIL import Image

from mnist_runner.paths import PROJECT_ROOT

pytestmark = pytest.mark.slow

EPOCHS = 3
# The dense model of conf/model/dense.yaml on 8x8 images: 64 inputs, then
# 512, 256, 128, 32 hidden units and 10 classes; weights plus biases.
LAYER_SIZES = [8 * 8, 512, 256, 128, 32, 10]
DENSE_ON_DIGITS_PARAMETERS = sum(n_in * n_out + n_out for n_in, n_out in zip(LAYER_SIZES, LAYER_SIZES[1:]))


def git(*args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(PROJECT_ROOT), *args], capture_output=True, text=True, check=True
    ).stdout.strip()


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory):
    """(store, run, result, HEAD before, HEAD after) of one digits run with its model."""
    from mnist_runner import train

    store = TempStore(tmp_path_factory.mktemp("run_facts"))
    shutil.copyfile(store_template(), store.db)  # a migrated store: seconds saved
    head_before = git("rev-parse", "HEAD")
    with pytest.MonkeyPatch.context() as patch:
        keep_tracking_uri(patch)
        result = train(["data=digits", f"trainer.epochs={EPOCHS}", "tracking.system_metrics=false", *store.overrides()])
    head_after = git("rev-parse", "HEAD")  # another commit may land meanwhile in a shared checkout
    run = store.client().get_run(result.run_id)
    assert run.info.status == "FINISHED"
    return store, run, result, {head_before, head_after}


def load_logged_model(store: TempStore, uri: str):
    import mlflow

    with pytest.MonkeyPatch.context() as patch:
        keep_tracking_uri(patch)
        mlflow.set_tracking_uri(store.uri)
        return mlflow.keras.load_model(uri)


def test_the_logged_model_scores_the_logged_test_accuracy_on_the_raw_test_images(digits_run):
    """Loaded back through MLflow (by run and by model id), the model takes raw
    0-16 pixels and gets the accuracy the run logged, to 1e-4."""
    from mnist_runner.datasets.loader import load_dataset
    from mnist_runner.serving import logged_models

    store, run, _, _ = digits_run
    digits = load_dataset("digits")
    logged = run.data.metrics["test_accuracy"]
    assert 0.5 < logged < 1.0, "a trained, imperfect model: the comparison means something"
    _, model_entry = logged_models.run_with_model(store.client(), run.info.run_id)
    assert model_entry.model_uri.startswith("models:/")
    for uri in (f"runs:/{run.info.run_id}/model", model_entry.model_uri):
        model = load_logged_model(store, uri)
        probabilities = model.predict(digits.x_test, verbose=0)  # uint8, exactly as loaded
        accuracy = float(np.mean(probabilities.argmax(axis=1) == digits.y_test))
        assert accuracy == pytest.approx(logged, abs=1e-4), uri


def test_derived_params_of_the_digits_config(digits_run):
    """1,437 training images; the last 30% validate (floor(1437 * 0.7) = 1005
    train, as Keras' validation_split cuts); 360 test images; pixels 0-16 scaled
    by 1/16; the dense network's weights and biases."""
    _, run, _, _ = digits_run
    params = run.data.params
    assert int(params["derived.train_samples"]) == 1005
    assert int(params["derived.validation_samples"]) == 432
    assert int(params["derived.test_samples"]) == 360
    assert float(params["derived.preprocess_scale"]) == 1 / 16
    assert float(params["derived.preprocess_offset"]) == 0.0
    assert DENSE_ON_DIGITS_PARAMETERS == 201_962
    assert int(params["derived.parameters"]) == DENSE_ON_DIGITS_PARAMETERS


def test_git_tags_are_the_checkouts_commit_and_state(digits_run):
    _, run, _, heads = digits_run
    tags = run.data.tags
    assert re.fullmatch(r"[0-9a-f]{40}", tags["git_commit"]), tags["git_commit"]
    assert tags["git_commit"] in heads
    # This checkout is shared and being edited; the tag must say so when it is.
    dirty = bool(git("status", "--porcelain"))
    if dirty:
        assert tags["git_dirty"] == "true"
    assert tags["git_dirty"] in ("true", "false")


def test_version_tags_are_the_installed_versions(digits_run):
    _, run, _, _ = digits_run
    tags = run.data.tags
    versions = {key.removeprefix("version."): value for key, value in tags.items() if key.startswith("version.")}
    assert {"keras", "mlflow", "hydra-core", "numpy"} <= set(versions), versions
    assert {"tensorflow", "tensorflow-cpu"} & set(versions), "the backend's package"
    for package, recorded in versions.items():
        assert recorded == version(package), package
    assert tags["python_version"] == platform.python_version()


def test_data_source_and_checksum_name_where_the_data_came_from(digits_run):
    from mnist_runner.datasets import sources
    from mnist_runner.datasets.loader import load_dataset

    _, run, _, _ = digits_run
    digits = load_dataset("digits")
    assert run.data.tags["data_source"] == "scikit-learn load_digits"
    arrays = {"x_train": digits.x_train, "y_train": digits.y_train, "x_test": digits.x_test, "y_test": digits.y_test}
    assert run.data.tags["data_checksum"] == sources.combined_checksum(sources.check_arrays(arrays, "digits"))
    assert run.data.tags["data"] == "digits" and run.data.tags["model"] == "dense"


# -- git_tags on repositories whose state is known --------------------------------


def make_repo(path):
    def run_git(*args):
        subprocess.run(["git", "-C", str(path), *args], check=True, capture_output=True)

    path.mkdir()
    run_git("init", "-q")
    run_git("config", "user.email", "t@example.invalid")
    run_git("config", "user.name", "t")
    (path / "a.txt").write_text("a\n")
    run_git("add", "a.txt")
    run_git("commit", "-q", "-m", "one")
    return subprocess.run(["git", "-C", str(path), "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()


@pytest.mark.parametrize(
    "change, dirty",
    [
        (None, "false"),
        (lambda repo: (repo / "new.txt").write_text("untracked\n"), "true"),
        (lambda repo: (repo / "a.txt").write_text("changed\n"), "true"),
    ],
    ids=["clean", "untracked-file", "modified-file"],
)
def test_git_tags_on_a_clean_and_a_changed_tree(tmp_path, monkeypatch, change, dirty):
    from mnist_runner.tracking import provenance

    repo = tmp_path / "repo"
    head = make_repo(repo)
    if change is not None:
        change(repo)
    monkeypatch.setattr(provenance, "PROJECT_ROOT", repo)
    assert provenance.git_tags() == {"git_commit": head, "git_dirty": dirty}


# -- predict.py on an 8x8 image -----------------------------------------------------


def test_predict_py_reads_an_8x8_digits_image_with_a_digits_model(digits_run, tmp_path):
    """A PNG drawn from a digits test image (0-16 stretched to 0-255) is read
    as an 8x8 input in the 0-16 range, and predict.py names a digit."""
    from mnist_runner.datasets.loader import load_dataset
    from mnist_runner.serving import predict

    store, run, _, _ = digits_run
    digits = load_dataset("digits")
    index = 0
    path = tmp_path / "digit.png"
    Image.fromarray(np.rint(digits.x_test[index] * (255 / 16)).astype(np.uint8)).save(path)
    choice = predict.choose_model(store.uri, run_id=run.info.run_id)
    assert choice.model_input.shape == (8, 8) and choice.model_input.pixel_max == 16
    done = subprocess.run(
        [sys.executable, str(PROJECT_ROOT / "predict.py"), str(path), "--run", run.info.run_id, "--uri", store.uri],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
    )
    assert done.returncode == 0, done.stderr[-2000:]
    header, row = done.stdout.splitlines()[:2]
    assert header.split() == ["file", "digit", "probability"]
    file, digit, probability = row.split()
    assert file == str(path) and digit in "0123456789" and 0 < float(probability) <= 1
    model = load_logged_model(store, f"runs:/{run.info.run_id}/model")
    prepared = predict.load_images([path], choice.model_input)
    assert prepared.shape == (1, 8, 8) and 0 < prepared.max() <= 16
    assert int(digit) == int(model.predict(prepared, verbose=0).argmax())


def test_digits_images_saved_as_files_get_the_predictions_of_the_arrays(digits_run, tmp_path):
    """The 360 digits test images as PNG files: the model's predictions on the
    prepared files agree with its predictions on the arrays, as they do for
    MNIST (tests/serving/test_predict.py; docs/using-models.md: 100%)."""
    from mnist_runner.datasets.loader import load_dataset
    from mnist_runner.serving import predict

    store, run, _, _ = digits_run
    digits = load_dataset("digits")
    paths = []
    for i, image in enumerate(digits.x_test):
        paths.append(tmp_path / f"{i:03d}.png")
        Image.fromarray(np.rint(image * (255 / 16)).astype(np.uint8)).save(paths[-1])
    choice = predict.choose_model(store.uri, run_id=run.info.run_id)
    model = load_logged_model(store, f"runs:/{run.info.run_id}/model")
    on_arrays = model.predict(digits.x_test, verbose=0).argmax(axis=1)
    on_files = model.predict(predict.load_images(paths, choice.model_input), verbose=0).argmax(axis=1)
    agreement = float(np.mean(on_files == on_arrays))
    print(
        f"digits as PNG files: {agreement:.1%} agree with the arrays' predictions; accuracy "
        f"{np.mean(on_arrays == digits.y_test):.1%} on the arrays, "
        f"{np.mean(on_files == digits.y_test):.1%} on the files"
    )
    assert agreement >= 0.95
