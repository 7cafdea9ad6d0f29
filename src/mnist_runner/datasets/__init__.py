"""Data sets by config name: what is known of them (``catalog``), where their
files come from and how they are verified (``sources``, ``idx``), and
loading them as uint8 image arrays (``loader.load_dataset``).

Importing this package imports neither NumPy nor TensorFlow.
"""

from mnist_runner.datasets.catalog import DATASETS, DEFAULT_DATASET, DatasetInfo

__all__ = ["DATASETS", "DEFAULT_DATASET", "DatasetInfo"]
