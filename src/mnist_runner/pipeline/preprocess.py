"""Pixel preprocessing as one affine map, ``x * scale + offset``, fitted on the
training part. It becomes the model's first layer, so the logged model takes
raw pixels and predicts exactly as it was trained.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mnist_runner.config.schema import PREPROCESSINGS


@dataclass(frozen=True)
class Rescale:
    scale: float
    offset: float


def fit_preprocessing(name: str, x_train: np.ndarray, pixel_max: int) -> Rescale:
    """``scale``: pixels / pixel_max (the course); ``standardize``: zero mean and
    unit variance over the training pixels; ``none``: raw values."""
    if name == "scale":
        return Rescale(scale=1.0 / pixel_max, offset=0.0)
    if name == "standardize":
        pixels = x_train.astype(np.float64)
        mean, std = float(pixels.mean()), float(pixels.std())
        if std == 0:
            raise ValueError("preprocess=standardize: the training pixels are constant (std 0)")
        return Rescale(scale=1.0 / std, offset=-mean / std)
    if name == "none":
        return Rescale(scale=1.0, offset=0.0)
    raise ValueError(f"preprocess.name={name!r}: choose one of {list(PREPROCESSINGS)}")
