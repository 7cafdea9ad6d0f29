"""Config-driven image-classification experiments with Keras, Hydra and MLflow.

The path of one run, in the order the data flows:
config (``config``) -> data (``datasets``, ``splits``) -> preprocessing
(``preprocess``) -> model (``models``) -> training (``training``) -> tracking
(``tracking``, ``plots``), tied together by ``experiment.run_experiment``.

Importing this package does not import TensorFlow.
"""

from mnist_runner.api import train

__all__ = ["train"]
