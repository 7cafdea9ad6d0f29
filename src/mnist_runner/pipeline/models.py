"""The networks, built from the ``model`` config group.

Each model starts with the fitted preprocessing (a ``Rescaling`` layer) and
its own reshaping, so it takes raw ``(height, width)`` images: flat vectors
for ``dense``, one-channel images for ``cnn``. Sizes come from the config,
so stronger variants are presets (conf/model/*.yaml), not code.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import keras
from keras import layers

from mnist_runner.config.schema import MODEL_TYPES
from mnist_runner.pipeline.preprocess import Rescale


def build_model(
    model_cfg: Mapping[str, Any], image_shape: Sequence[int], num_classes: int, rescale: Rescale
) -> keras.Model:
    """``model_cfg`` is the ``model`` group: ``name``, ``type`` and the sizes."""
    sizes = {key: value for key, value in model_cfg.items() if key not in ("name", "type")}
    builders = {"dense": dense_layers, "cnn": cnn_layers}
    if model_cfg["type"] not in builders:
        raise ValueError(f"model.type={model_cfg['type']!r}: choose one of {list(MODEL_TYPES)}")
    inputs = keras.Input(shape=tuple(image_shape), name="image")
    x = layers.Rescaling(rescale.scale, rescale.offset, name="preprocess")(inputs)
    x = builders[model_cfg["type"]](x, **sizes)
    # float32 even under a mixed policy: the probabilities, the loss and the
    # logged model's predictions keep full precision.
    outputs = layers.Dense(num_classes, activation="softmax", dtype="float32", name="class_probabilities")(x)
    return keras.Model(inputs, outputs, name=model_cfg["name"])


def dense_layers(x, hidden_units: Sequence[int], activation: str, dropout: float):
    """The course's network: flatten, then fully connected layers."""
    x = layers.Flatten()(x)
    for units in hidden_units:
        x = layers.Dense(units, activation=activation)(x)
        if dropout:
            x = layers.Dropout(dropout)(x)
    return x


def cnn_layers(
    x,
    conv_filters: Sequence[int],
    kernel_size: int,
    pool_size: int,
    dense_units: Sequence[int],
    activation: str,
    dropout: float,
    batch_norm: bool = False,
):
    """Convolution blocks, then dense layers; dropout before every dense layer.

    A block is convolution, max-pooling, activation: the course's order. For
    ReLU it equals convolution-activation-pooling (keras-io's order), since
    max-pooling and a monotonic activation commute. ``batch_norm`` normalises
    each convolution's outputs before the pooling (the convolution then needs
    no bias: the normalisation's own offset replaces it), which lets a larger
    learning rate train in fewer epochs.
    """
    x = layers.Reshape((*x.shape[1:], 1))(x)
    for filters in conv_filters:
        x = layers.Conv2D(filters, kernel_size, use_bias=not batch_norm)(x)
        if batch_norm:
            x = layers.BatchNormalization()(x)
        x = layers.MaxPooling2D(pool_size)(x)
        x = layers.Activation(activation)(x)
    x = layers.Flatten()(x)
    for units in dense_units:
        if dropout:
            x = layers.Dropout(dropout)(x)
        x = layers.Dense(units, activation=activation)(x)
    if dropout:
        x = layers.Dropout(dropout)(x)
    return x
