"""``loader.prefetch``: a data set read in a thread while the process does
other work, then handed to ``load_dataset`` as if it had read it itself."""

import threading
import time

import numpy as np
import pytest

from mnist_runner.datasets import loader
from mnist_runner.datasets.idx import DataError


def arrays() -> dict[str, np.ndarray]:
    images = np.zeros((20, 28, 28), dtype=np.uint8)
    labels = (np.arange(20) % 10).astype(np.uint8)
    return {"x_train": images, "y_train": labels, "x_test": images[:10], "y_test": labels[:10]}


def test_a_prefetched_data_set_is_read_once_in_a_thread_and_handed_to_load_dataset(tmp_path, monkeypatch):
    readers = []

    def load_verified(spec, path, cache_dir):
        readers.append(threading.current_thread().name)
        time.sleep(0.2)  # still reading when load_dataset asks: it must wait, not read again
        return arrays(), "synthetic", "checksum"

    monkeypatch.setattr(loader.sources, "load_verified", load_verified)
    loader.prefetch("mnist", None, tmp_path)
    dataset = loader.load_dataset("mnist", None, tmp_path)
    assert readers == ["data-prefetch"]
    assert (dataset.source, dataset.x_train.shape) == ("synthetic", (20, 28, 28))
    assert not dataset.x_train.flags.writeable
    assert loader.load_dataset("mnist", None, tmp_path) is dataset  # kept for the next job, not read again
    assert readers == ["data-prefetch"]


def test_what_a_prefetch_raised_is_raised_by_load_dataset(tmp_path, monkeypatch):
    def load_verified(spec, path, cache_dir):
        raise DataError("data.path=broken.npz: not a zip file")

    monkeypatch.setattr(loader.sources, "load_verified", load_verified)
    loader.prefetch("mnist", "broken.npz", tmp_path)  # raises nothing here: the run decides when it needs the data
    with pytest.raises(DataError, match="broken.npz: not a zip file"):
        loader.load_dataset("mnist", "broken.npz", tmp_path)


def test_the_digits_are_not_prefetched(tmp_path):
    # scikit-learn's import in a thread would race Keras' import of it.
    loader.prefetch("digits", None, tmp_path)
    assert ("digits", None, tmp_path) not in loader._prefetched
