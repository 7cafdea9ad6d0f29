"""Data sets as uint8 image arrays with integer labels, by config name.

``load_dataset("mnist")`` gives the same ``Dataset`` whatever the source;
``data.path``, caching and verification are in ``sources``. What is loaded is
checked against the catalog's sizes.
"""

from __future__ import annotations

import functools
import threading
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mnist_runner.datasets import sources
from mnist_runner.datasets.catalog import DATASETS
from mnist_runner.datasets.idx import DataError
from mnist_runner.paths import DATA_CACHE_DIR

__all__ = ["DataError", "Dataset", "load_dataset", "prefetch"]

DIGITS_SPLIT_SEED = 0  # fixed, so the digits test set never changes with trainer.seed


@dataclass(frozen=True)
class Dataset:
    name: str
    x_train: np.ndarray  # (n, height, width) uint8
    y_train: np.ndarray  # (n,) uint8 class indices
    x_test: np.ndarray
    y_test: np.ndarray
    pixel_max: int  # the largest possible pixel value: 255, or 16 for digits
    source: str  # where the arrays came from
    checksum: str  # SHA-256 identifying the data set's content
    num_classes: int = 10

    @property
    def image_shape(self) -> tuple[int, int]:
        return self.x_train.shape[1:]


# Loads started by ``prefetch``, by ``load_dataset``'s arguments; taken by its next call.
_prefetched: dict[tuple, Future] = {}


def prefetch(name: str, path: str | None = None, cache_dir: Path = DATA_CACHE_DIR) -> None:
    """Start loading a data set in a thread; ``load_dataset`` with the same
    arguments then waits for it (and raises what it raised). For a process
    with other work before it needs the data: run.py imports MLflow and
    Keras meanwhile, and reading, decompressing and hashing the arrays leave
    Python's interpreter lock free most of the time (about 0.25 s of a run's
    start on 2 cores). Not the digits: they come from scikit-learn, whose
    import would race Keras' own import of it."""
    key = (name, path, cache_dir)
    if name == "digits" or key in _prefetched:
        return
    future: Future = Future()

    def load() -> None:
        try:
            future.set_result(_load_once(*key))
        except BaseException as error:  # handed to load_dataset, in the thread that asked
            future.set_exception(error)

    _prefetched[key] = future
    threading.Thread(target=load, name="data-prefetch", daemon=True).start()


def load_dataset(name: str, path: str | None = None, cache_dir: Path = DATA_CACHE_DIR) -> Dataset:
    """The data set ``name`` (one of ``DATASETS``), verified.

    Kept in memory for the next job in the same process (an in-process sweep,
    a notebook): reading and verifying MNIST again would cost about 0.5 s.
    The arrays are read-only so that no job can change what the next one gets.
    """
    started = _prefetched.pop((name, path, cache_dir), None)
    return started.result() if started is not None else _load_once(name, path, cache_dir)


@functools.lru_cache(maxsize=2)
def _load_once(name: str, path: str | None, cache_dir: Path) -> Dataset:
    dataset = _load(name, path, cache_dir)
    for array in (dataset.x_train, dataset.y_train, dataset.x_test, dataset.y_test):
        array.flags.writeable = False
    return dataset


def _load(name: str, path: str | None, cache_dir: Path) -> Dataset:
    if name == "digits":
        return load_digits()
    specs = {"mnist": sources.MNIST, "fashion_mnist": sources.FASHION_MNIST}
    if name not in specs:
        raise DataError(f"data.name={name!r} is not a known data set; choose one of {list(DATASETS)}")
    arrays, source, checksum = sources.load_verified(specs[name], path, cache_dir)
    return Dataset(name=name, pixel_max=DATASETS[name].pixel_max, source=source, checksum=checksum, **arrays)


def load_digits() -> Dataset:
    """scikit-learn's bundled 8x8 digits, split once into training and test parts."""
    from sklearn.datasets import load_digits as sklearn_digits
    from sklearn.model_selection import train_test_split

    bunch = sklearn_digits()
    images = bunch.images.astype(np.uint8)  # values 0-16
    labels = bunch.target.astype(np.uint8)
    info = DATASETS["digits"]
    x_train, x_test, y_train, y_test = train_test_split(
        images, labels, test_size=info.test_size, stratify=labels, random_state=DIGITS_SPLIT_SEED
    )
    arrays = {"x_train": x_train, "y_train": y_train, "x_test": x_test, "y_test": y_test}
    checksum = sources.combined_checksum(sources.check_arrays(arrays, "sklearn digits"))
    return Dataset(
        name="digits", pixel_max=info.pixel_max, source="scikit-learn load_digits", checksum=checksum, **arrays
    )
