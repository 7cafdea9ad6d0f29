"""Process-wide Keras and TensorFlow state, reset for every run.

A notebook or an in-process sweep runs several jobs in one process; each
must give the numbers it gives alone and leave nothing behind for the next.
"""

from __future__ import annotations

import keras
import tensorflow as tf
from tensorflow.python.framework import ops as tf_ops

_sessions_prepared = 0  # in this process


def prepare_session(seed: int, deterministic: bool, precision: str = "float32") -> None:
    """A fresh Keras state seeded for this run. The dtype policy is set every
    time, float32 included, since it is global and would otherwise leak from a
    ``mixed_bfloat16`` job into the next. With ``deterministic``, also
    TensorFlow's op determinism."""
    global _sessions_prepared
    # Garbage collection frees an earlier job's models and graphs; it takes
    # ~0.2 s, so the first job of a process, with nothing to free, skips it.
    keras.backend.clear_session(free_memory=_sessions_prepared > 0)
    _sessions_prepared += 1
    forget_traced_gradients()
    keras.utils.set_random_seed(seed)
    keras.mixed_precision.set_global_policy(precision)
    if deterministic:
        tf.config.experimental.enable_op_determinism()


def forget_traced_gradients() -> None:
    """Let earlier jobs' training graphs go (an in-process sweep grew ~10-18 MB per job).

    Keras' TensorFlow optimizer sums gradients with a replica-context
    all-reduce that is a ``tf.custom_gradient``; in graph mode each trace
    registers its gradient function under a new name in TensorFlow's global
    gradient registry, and that entry keeps the whole traced train step alive
    for the life of the process. The registry is read only while a graph is
    being differentiated, which happens while tracing, so between jobs the
    entries can go. The registry is private to TensorFlow: if it changes, this
    does nothing.
    """
    registry = getattr(getattr(tf_ops, "gradient_registry", None), "_registry", None)
    if isinstance(registry, dict):
        for name in [name for name in registry if name.startswith("CustomGradient-")]:
            del registry[name]
