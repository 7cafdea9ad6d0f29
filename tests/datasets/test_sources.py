"""Data sources on small synthetic data sets written by the tests, and what
they log while one after the other has no data."""

import dataclasses
import logging
import re

import numpy as np
import pytest

from mnist_runner.datasets import sources
from mnist_runner.datasets.idx import DataError, idx_sha256, write_idx
from mnist_runner.datasets.sources import IDX_FILES, SPLITS, SourceUnavailable


def synthetic_arrays(seed=0, n_train=40, n_test=20):
    rng = np.random.default_rng(seed)
    return {
        "x_train": rng.integers(0, 256, size=(n_train, 28, 28), dtype=np.uint8),
        "y_train": (np.arange(n_train) % 10).astype(np.uint8),
        "x_test": rng.integers(0, 256, size=(n_test, 28, 28), dtype=np.uint8),
        "y_test": (np.arange(n_test) % 10).astype(np.uint8),
    }


def spec_for(arrays, fallback=None):
    """A data set spec whose reference checksums are those of ``arrays``."""

    def no_fallback():
        raise SourceUnavailable("no fallback in this test")

    return dataclasses.replace(
        sources.MNIST,
        name="synthetic",
        sha256={split: idx_sha256(arrays[split]) for split in SPLITS},
        fallback=fallback or no_fallback,
        fallback_name="test fallback",
    )


@pytest.fixture(autouse=True)
def offline(monkeypatch, tmp_path):
    """No keras cache and no download in these tests."""
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras_home"))

    def no_download(spec):
        raise SourceUnavailable("offline in tests")

    monkeypatch.setattr(sources, "from_keras_download", no_download)


def write_folder(folder, arrays, gz=False):
    folder.mkdir(parents=True, exist_ok=True)
    for split, name in IDX_FILES.items():
        write_idx(folder / (name + (".gz" if gz else "")), arrays[split])


@pytest.mark.parametrize("gz", [False, True])
def test_data_path_folder_of_idx_files(tmp_path, gz):
    arrays = synthetic_arrays()
    write_folder(tmp_path / "idx", arrays, gz=gz)
    loaded, source, checksum = sources.load_verified(spec_for(arrays), str(tmp_path / "idx"), tmp_path / "cache")
    for split in SPLITS:
        np.testing.assert_array_equal(loaded[split], arrays[split])
    assert source == f"data.path={tmp_path / 'idx'}"
    assert len(checksum) == 64


def test_data_path_npz(tmp_path):
    arrays = synthetic_arrays()
    np.savez(tmp_path / "mnist.npz", **arrays)
    loaded, _, _ = sources.load_verified(spec_for(arrays), str(tmp_path / "mnist.npz"), tmp_path / "cache")
    np.testing.assert_array_equal(loaded["y_test"], arrays["y_test"])


def test_checksum_mismatch_names_the_split_and_file(tmp_path):
    arrays = synthetic_arrays()
    spec = spec_for(arrays)
    tampered = dict(arrays, x_test=arrays["x_test"].copy())
    tampered["x_test"][0, 0, 0] ^= 1
    np.savez(tmp_path / "tampered.npz", **tampered)
    with pytest.raises(DataError, match=r"tampered\.npz: x_test is not the original synthetic"):
        sources.load_verified(spec, str(tmp_path / "tampered.npz"), tmp_path / "cache")
    assert not (tmp_path / "cache").exists(), "nothing may be cached from a bad source"


def test_labels_outside_0_to_9_are_refused(tmp_path):
    arrays = synthetic_arrays()
    arrays["y_train"][3] = 11
    with pytest.raises(DataError, match="label 11; labels must be 0-9"):
        sources.check_arrays(arrays, "somewhere")


def test_wrong_shapes_are_refused():
    arrays = synthetic_arrays()
    arrays["y_train"] = arrays["y_train"][:-1]
    with pytest.raises(DataError, match="x_train .* and y_train"):
        sources.check_arrays(arrays, "somewhere")


def test_npz_with_missing_arrays(tmp_path):
    np.savez(tmp_path / "partial.npz", x_train=np.zeros((1, 2, 2), np.uint8))
    with pytest.raises(DataError, match=r"partial\.npz: missing arrays \['y_train', 'x_test', 'y_test'\]"):
        sources.read_npz(tmp_path / "partial.npz")


def test_npz_with_pickled_objects_is_refused(tmp_path):
    objects = np.array([{"a": 1}], dtype=object)
    np.savez(tmp_path / "pickled.npz", x_train=objects, y_train=objects, x_test=objects, y_test=objects)
    with pytest.raises(DataError, match=r"pickled\.npz: .*allow_pickle"):
        sources.read_npz(tmp_path / "pickled.npz")


def test_truncated_npz(tmp_path):
    np.savez_compressed(tmp_path / "full.npz", **synthetic_arrays())
    raw = (tmp_path / "full.npz").read_bytes()
    (tmp_path / "cut.npz").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(DataError, match=r"cut\.npz: not a readable npz"):
        sources.read_npz(tmp_path / "cut.npz")


def test_missing_idx_files_are_listed(tmp_path):
    arrays = synthetic_arrays()
    write_folder(tmp_path / "idx", arrays)
    (tmp_path / "idx" / IDX_FILES["y_test"]).unlink()
    with pytest.raises(DataError, match=r"missing IDX files \['t10k-labels-idx1-ubyte'\]"):
        sources.read_path(tmp_path / "idx")


def test_missing_data_path(tmp_path):
    with pytest.raises(DataError, match="no such file or folder"):
        sources.read_path(tmp_path / "nowhere")


def test_fallback_is_verified_cached_then_cache_is_used(tmp_path):
    arrays = synthetic_arrays()
    calls = []

    def fallback():
        calls.append(1)
        return arrays

    spec = spec_for(arrays, fallback)
    _, source, first = sources.load_verified(spec, None, tmp_path / "cache")
    assert source == "test fallback" and (tmp_path / "cache" / "synthetic.npz").is_file()
    _, source, second = sources.load_verified(spec, None, tmp_path / "cache")
    assert source.startswith("cache ") and calls == [1] and first == second


def test_corrupt_cache_is_skipped_and_replaced(tmp_path):
    arrays = synthetic_arrays()
    spec = spec_for(arrays, lambda: arrays)
    (tmp_path / "cache").mkdir()
    np.savez(tmp_path / "cache" / "synthetic.npz", **synthetic_arrays(seed=1))  # other content
    _, source, _ = sources.load_verified(spec, None, tmp_path / "cache")
    assert source == "test fallback"
    _, source, _ = sources.load_verified(spec, None, tmp_path / "cache")
    assert source.startswith("cache ")


def test_bad_fallback_is_not_cached_and_every_source_is_named(tmp_path):
    arrays = synthetic_arrays()
    spec = spec_for(arrays, lambda: synthetic_arrays(seed=2))
    with pytest.raises(DataError) as error:
        sources.load_verified(spec, None, tmp_path / "cache")
    message = str(error.value)
    for name in ("cache", "keras cache", "keras download", "test fallback", "data.path="):
        assert name in message
    assert not (tmp_path / "cache" / "synthetic.npz").exists()


def test_keras_cache_folder_of_gz_files(tmp_path):
    arrays = synthetic_arrays()
    spec = dataclasses.replace(spec_for(arrays), keras_cache="synthetic-folder")
    write_folder(tmp_path / "keras_home" / "datasets" / "synthetic-folder", arrays, gz=True)
    _, source, _ = sources.load_verified(spec, None, tmp_path / "cache")
    assert source == "keras cache"


def test_a_loaded_data_set_is_kept_for_the_next_job_and_read_only():
    from mnist_runner.datasets.loader import load_dataset

    first = load_dataset("digits")
    assert load_dataset("digits") is first
    with pytest.raises(ValueError, match="read-only"):
        first.x_train[0, 0, 0] = 1


def test_a_data_source_without_the_data_is_progress_not_a_warning(tmp_path, monkeypatch, caplog):
    rng = np.random.default_rng(0)
    arrays = {
        "x_train": rng.integers(0, 256, size=(20, 28, 28), dtype=np.uint8),
        "y_train": (np.arange(20) % 10).astype(np.uint8),
        "x_test": rng.integers(0, 256, size=(10, 28, 28), dtype=np.uint8),
        "y_test": (np.arange(10) % 10).astype(np.uint8),
    }
    spec = dataclasses.replace(
        sources.MNIST,
        name="synthetic",
        sha256={split: idx_sha256(arrays[split]) for split in SPLITS},
        fallback=lambda: arrays,
        fallback_name="test fallback",
    )
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras_home"))

    def offline(spec):
        raise SourceUnavailable("offline in tests")

    monkeypatch.setattr(sources, "from_keras_download", offline)
    with caplog.at_level(logging.INFO, logger=sources.__name__):
        _, source, _ = sources.load_verified(spec, None, tmp_path / "cache")

    assert source == "test fallback"
    progress = [r.getMessage() for r in caplog.records if "has none" in r.getMessage()]
    assert len(progress) == 3, caplog.text
    assert re.fullmatch(r"synthetic: cache .*synthetic\.npz has none \(.*not found\); trying keras cache", progress[0])
    assert progress[-1] == "synthetic: keras download has none (offline in tests); trying test fallback"
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
