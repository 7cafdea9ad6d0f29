"""Every bad input gets a short message naming the key or file, exit code 2,
no traceback, and leaves no run in the MLflow store."""

import numpy as np
import pytest
from mlflow.tracking import MlflowClient

from mnist_runner.datasets.idx import write_idx
from mnist_runner.datasets.sources import IDX_FILES


def synthetic_npz(path, **changes):
    rng = np.random.default_rng(0)
    arrays = {
        "x_train": rng.integers(0, 256, size=(30, 28, 28), dtype=np.uint8),
        "y_train": (np.arange(30) % 10).astype(np.uint8),
        "x_test": rng.integers(0, 256, size=(10, 28, 28), dtype=np.uint8),
        "y_test": (np.arange(10) % 10).astype(np.uint8),
    }
    arrays.update(changes)
    np.savez(path, **arrays)
    return path


def truncated_npz(tmp_path):
    path = synthetic_npz(tmp_path / "full.npz")
    (tmp_path / "cut.npz").write_bytes(path.read_bytes()[:5000])
    return tmp_path / "cut.npz"


def bad_magic_folder(tmp_path):
    folder = tmp_path / "idx"
    folder.mkdir()
    for name in IDX_FILES.values():
        write_idx(folder / name, np.zeros((10, 28, 28) if "images" in name else (10,), np.uint8))
    raw = bytearray((folder / IDX_FILES["x_test"]).read_bytes())
    raw[2] = 0x0D  # float type code instead of unsigned byte
    (folder / IDX_FILES["x_test"]).write_bytes(bytes(raw))
    return folder


# (overrides, or a function of tmp_path returning overrides; fragment of the message)
CONFIG_ERRORS = [
    (["trainer.epochs=0"], "trainer.epochs=0 is not allowed: must be >= 1"),
    (["trainer.batch_size=0"], "trainer.batch_size=0 is not allowed"),
    (
        ["trainer.validation_split=1.0"],
        "trainer.validation_split=1.0 is not allowed: a fraction strictly between 0 and 1",
    ),
    (["trainer.learning_rate=-0.1"], "trainer.learning_rate=-0.1 is not allowed: must be > 0"),
    (["trainer.optimizer=adamm"], "trainer.optimizer='adamm' is not allowed: choose one of sgd, rmsprop, adam"),
    (["data.train_samples=70000"], "data.train_samples=70000 is not allowed: between 10 (one per class) and 60000"),
    (["data=digits", "data.train_samples=5000"], "and 1437 (the digits training set)"),
    (["model.dropout=1.0"], "model.dropout=1.0 is not allowed: a rate in [0, 1)"),
    (["model.hidden_units=[512,0]"], "model.hidden_units=[512, 0] is not allowed: every size must be >= 1"),
    (["model=cnn", "model.activation=relux"], "model.activation='relux' is not allowed: choose one of relu"),
    (["trainer.epochs=abc"], "Value 'abc' of type 'str' could not be converted to Integer"),
    (["trainer.epoch=3"], "Key 'epoch' not in 'TrainerConfig'"),
    (["model=transformer"], "Could not find 'model/transformer'"),
    (["experiment=nope"], "Could not find 'experiment/nope'"),
]

DATA_AND_STORE_ERRORS = [
    (lambda tmp: [f"data.path={tmp / 'missing.npz'}"], "missing.npz: no such file or folder"),
    (lambda tmp: [f"data.path={truncated_npz(tmp)}"], "cut.npz: not a readable npz"),
    (lambda tmp: [f"data.path={synthetic_npz(tmp / 'other.npz')}"], "other.npz: x_train is not the original mnist"),
    (
        lambda tmp: [f"data.path={synthetic_npz(tmp / 'labels.npz', y_test=np.full(10, 12, np.uint8))}"],
        "labels.npz: y_test holds label 12; labels must be 0-9",
    ),
    (lambda tmp: [f"data.path={bad_magic_folder(tmp)}"], "t10k-images-idx3-ubyte: bad IDX magic number 0x00000d03"),
    (
        lambda tmp: ["tracking.uri=http://127.0.0.1:9"],
        "tracking.uri=http://127.0.0.1:9: no MLflow server answers there",
    ),
    (
        lambda tmp: ["tracking.uri=sqlite:////dev/null/store/mlflow.db"],
        "tracking.uri=sqlite:////dev/null/store/mlflow.db: cannot create the store's folder",
    ),
]


def assert_usage_error(done, uri, fragment):
    output = done.stdout + done.stderr
    assert done.returncode == 2, output[-2000:]
    assert fragment in output, output[-2000:]
    assert "Traceback" not in output
    if uri.startswith("sqlite:///") and "/dev/null" not in uri:
        client = MlflowClient(tracking_uri=uri)
        experiments = [e.experiment_id for e in client.search_experiments()]
        assert not experiments or client.search_runs(experiments) == []


@pytest.mark.parametrize("overrides,fragment", CONFIG_ERRORS, ids=[" ".join(o) for o, _ in CONFIG_ERRORS])
def test_config_errors(run_cli, overrides, fragment):
    done, uri = run_cli(*overrides)
    assert_usage_error(done, uri, fragment)


@pytest.mark.parametrize("make_overrides,fragment", DATA_AND_STORE_ERRORS, ids=[f for _, f in DATA_AND_STORE_ERRORS])
def test_data_and_store_errors(run_cli, tmp_path, make_overrides, fragment):
    done, uri = run_cli(*make_overrides(tmp_path))
    assert_usage_error(done, uri, fragment)


def test_unknown_option_lists_the_valid_ones(run_cli):
    done, _ = run_cli("model=transformer")
    for option in ("cnn", "convnet", "dense"):
        assert f"\t{option}" in done.stdout + done.stderr


def test_full_error_shows_the_traceback(run_cli, monkeypatch):
    monkeypatch.setenv("HYDRA_FULL_ERROR", "1")
    done, _ = run_cli("trainer.epochs=0")
    assert "Traceback" in done.stderr and "ConfigError" in done.stderr
