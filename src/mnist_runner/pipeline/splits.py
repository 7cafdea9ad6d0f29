"""Which images train, which validate: a stratified subset and Keras' hold-out."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def stratified_subset(x: np.ndarray, y: np.ndarray, size: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``size`` samples of ``(x, y)`` with the class proportions of ``y``."""
    if not 0 < size <= len(y):
        raise ValueError(f"data.train_samples={size}: must be between 1 and {len(y)} (the training set size)")
    if size == len(y):
        return x, y
    from sklearn.model_selection import StratifiedShuffleSplit

    # The indices that ``train_test_split(x, y, train_size=size, stratify=y,
    # random_state=seed)`` picks, without the copy of the rest of the images
    # it also makes (~0.15 s a job for MNIST, then thrown away).
    chooser = StratifiedShuffleSplit(n_splits=1, test_size=len(y) - size, train_size=size, random_state=seed)
    try:
        chosen, _ = next(chooser.split(np.zeros(len(y)), y))
    except ValueError as error:  # fewer samples than classes
        raise ValueError(f"data.train_samples={size}: too small to hold every class ({error})") from error
    return x[chosen], y[chosen]


def holdout(
    x: np.ndarray, y: np.ndarray, validation_split: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Split off the last ``validation_split`` of the samples, exactly as Keras'
    ``fit(validation_split=...)`` does, so the course's numbers carry over.

    Done here rather than by Keras so the training part can be re-evaluated
    for the overfitting gap and the preprocessing fitted on it alone.
    """
    if not 0 < validation_split < 1:
        raise ValueError(f"trainer.validation_split={validation_split}: must be between 0 and 1 (exclusive)")
    split_at = int(np.floor(len(y) * (1.0 - validation_split)))
    if split_at == 0 or split_at == len(y):
        raise ValueError(
            f"trainer.validation_split={validation_split} leaves no training or no validation samples out of {len(y)}"
        )
    return x[:split_at], y[:split_at], x[split_at:], y[split_at:]


@dataclass(frozen=True)
class Split:
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray


def split_training_data(dataset, train_samples: int | None, validation_split: float, seed: int) -> Split:
    """The training and validation parts of ``dataset``'s training set: a
    stratified subset of ``train_samples`` first (null: all), then Keras'
    hold-out of the last ``validation_split``."""
    x, y = dataset.x_train, dataset.y_train
    if train_samples is not None:
        x, y = stratified_subset(x, y, train_samples, seed)
    return Split(*holdout(x, y, validation_split))
