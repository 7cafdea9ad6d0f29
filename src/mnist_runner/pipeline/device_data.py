"""The training set kept on the GPU for the whole of ``fit`` (JAX).

Keras' own input pipeline slices every batch from host memory and copies
it to the device (JAX: one batch ahead, overlapping the copy with the
step). MNIST-sized data fits in a GPU many times over, so on JAX with a GPU
the training images and labels are put on the device once and each batch is
gathered there, by a shuffled index per epoch (``DeviceBatches``).

``MNIST_RUNNER_DEVICE_DATA=1`` forces it (also on a CPU, where it changes
nothing but lets the path be tested), ``=0`` turns it off.
"""

from __future__ import annotations

import logging
import math
import os

import keras
import numpy as np

log = logging.getLogger(__name__)

ENV = "MNIST_RUNNER_DEVICE_DATA"
# At most this share of the device's memory goes to the resident data set.
MAX_SHARE = 0.25


def wanted(nbytes: int) -> bool:
    """Whether to keep a training set of ``nbytes`` on the device."""
    setting = os.environ.get(ENV)
    if setting in ("0", "1"):
        return setting == "1" and keras.backend.backend() == "jax"
    if keras.backend.backend() != "jax":
        return False
    import jax

    device = jax.devices()[0]
    if device.platform != "gpu":
        return False
    limit = (device.memory_stats() or {}).get("bytes_limit")
    return limit is not None and nbytes <= MAX_SHARE * limit


class DeviceBatches(keras.utils.PyDataset):
    """Batches of ``(x, y)`` gathered on the device, reshuffled every epoch
    (by a generator seeded with ``seed``), the last one smaller as in
    Keras' own batching."""

    def __init__(self, x: np.ndarray, y: np.ndarray, batch_size: int, seed: int):
        super().__init__(workers=1, use_multiprocessing=False)
        import jax

        self.x, self.y = jax.device_put(x), jax.device_put(y)
        self.size, self.batch_size = len(y), batch_size
        self.rng = np.random.default_rng(seed)
        self.on_epoch_end()

    @property
    def num_batches(self) -> int:
        return math.ceil(self.size / self.batch_size)

    def __len__(self) -> int:
        return self.num_batches

    def __getitem__(self, index: int):
        picked = self.order[index * self.batch_size : (index + 1) * self.batch_size]
        return self.x[picked], self.y[picked]

    def on_epoch_end(self) -> None:
        import jax

        self.order = jax.device_put(self.rng.permutation(self.size).astype(np.int32))


def training_inputs(x: np.ndarray, y: np.ndarray, batch_size: int, seed: int) -> dict:
    """``fit``'s training arguments: the arrays as they are, or ``DeviceBatches``."""
    if wanted(x.nbytes + y.nbytes):
        log.info("training data on the device: %.0f MB", (x.nbytes + y.nbytes) / 2**20)
        return {"x": DeviceBatches(x, y, batch_size, seed)}
    return {"x": x, "y": y, "batch_size": batch_size}
