"""Every bad input gets a short message naming the key or file, exit code 2,
no traceback, and leaves no run in the MLflow store.

Each message is checked in the test's process, where ``run.py`` meets the
input: composing the config (Hydra's errors), ``schema.validate``, opening the
store, loading the data. A few cases, one per kind, run the real command to
check what a user sees: the exit code, the one line, no traceback, no run."""

import numpy as np
import pytest
from hydra.errors import HydraException
from omegaconf.errors import OmegaConfBaseException

from mnist_runner.config import schema
from mnist_runner.datasets.idx import write_idx
from mnist_runner.datasets.loader import load_dataset
from mnist_runner.datasets.sources import IDX_FILES
from mnist_runner.errors import EXIT_USAGE, UserError
from mnist_runner.tracking import store


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


def error_message(error: BaseException) -> str:
    """The error's text and its causes', as run.py prints them."""
    parts = []
    while error is not None:
        parts.append(str(error))
        error = error.__cause__
    return "\n".join(parts)


def config_error(compose_cfg, overrides) -> str:
    """The message of composing and checking the config with ``overrides``."""
    with pytest.raises((UserError, HydraException, OmegaConfBaseException)) as raised:
        schema.validate(compose_cfg(*overrides))
    if isinstance(raised.value, UserError):
        assert raised.value.exit_code == EXIT_USAGE
    return error_message(raised.value)


def data_or_store_error(compose_cfg, tmp_path, overrides) -> str:
    """The message of opening the store and loading the data, in run.py's order."""
    cfg = compose_cfg(*overrides)
    schema.validate(cfg)
    with pytest.raises(UserError) as raised:
        given = dict(override.split("=", 1) for override in overrides)
        uri = given.get("tracking.uri", f"sqlite:///{tmp_path / 'mlflow.db'}")  # not the project's runs/
        store.connect(uri, cfg.tracking.experiment, str(tmp_path / "artifacts"))
        load_dataset(cfg.data.name, cfg.data.path)
    assert raised.value.exit_code == EXIT_USAGE
    return error_message(raised.value)


@pytest.mark.parametrize("overrides,fragment", CONFIG_ERRORS, ids=[" ".join(o) for o, _ in CONFIG_ERRORS])
def test_config_errors(compose_cfg, overrides, fragment):
    assert fragment in config_error(compose_cfg, overrides)


@pytest.mark.parametrize("make_overrides,fragment", DATA_AND_STORE_ERRORS, ids=[f for _, f in DATA_AND_STORE_ERRORS])
def test_data_and_store_errors(compose_cfg, tmp_path, make_overrides, fragment):
    assert fragment in data_or_store_error(compose_cfg, tmp_path, make_overrides(tmp_path))


def test_unknown_option_lists_the_valid_ones(compose_cfg):
    message = config_error(compose_cfg, ["model=transformer"])
    for option in ("cnn", "convnet", "dense"):
        assert f"\t{option}" in message


def assert_usage_error(store_of_test, done, uri, fragment):
    output = done.stdout + done.stderr
    assert done.returncode == 2, output[-2000:]
    assert fragment in output, output[-2000:]
    assert "Traceback" not in output
    errors = [line for line in done.stderr.splitlines() if "ERROR" in line or line.startswith("error:")]
    assert len(errors) <= 1, done.stderr[-2000:]  # Hydra's own messages are several lines, not marked ERROR
    if uri == store_of_test.uri:
        assert store_of_test.runs() == []


# One case of each kind, through the real command.
REAL_COMMAND = [
    (["trainer.epochs=0"], "trainer.epochs=0 is not allowed: must be >= 1"),
    (["model=transformer"], "Could not find 'model/transformer'"),
    (lambda tmp: [f"data.path={truncated_npz(tmp)}"], "cut.npz: not a readable npz"),
    (
        lambda tmp: ["tracking.uri=http://127.0.0.1:9"],
        "tracking.uri=http://127.0.0.1:9: no MLflow server answers there",
    ),
]


@pytest.mark.parametrize("overrides,fragment", REAL_COMMAND, ids=[f for _, f in REAL_COMMAND])
def test_the_command_exits_2_with_the_message_and_no_run(run_cli, tmp_store, tmp_path, overrides, fragment):
    done, uri = run_cli(*(overrides(tmp_path) if callable(overrides) else overrides))
    assert_usage_error(tmp_store, done, uri, fragment)


def test_full_error_shows_the_traceback(run_cli, monkeypatch):
    monkeypatch.setenv("HYDRA_FULL_ERROR", "1")
    done, _ = run_cli("trainer.epochs=0")
    assert "Traceback" in done.stderr and "ConfigError" in done.stderr
