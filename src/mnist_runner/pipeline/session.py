"""Process-wide Keras state, reset for every run, on whichever backend
Keras runs (``config.backend``).

A notebook or an in-process sweep runs several jobs in one process; each
must give the numbers it gives alone and leave nothing behind for the next.
"""

from __future__ import annotations

import keras

from mnist_runner.config import backend

_sessions_prepared = 0  # in this process


def prepare_session(
    seed: int, deterministic: bool, precision: str = "float32", backend_name: str | None = None
) -> None:
    """A fresh Keras state seeded for this run. The dtype policy is set every
    time, float32 included, since it is global and would otherwise leak from a
    ``mixed_bfloat16`` job into the next. With ``deterministic``, also the
    backend's deterministic kernels (what differs between runs on a GPU; on
    a CPU the same seed gives the same numbers on every backend anyway).

    ``backend_name``: the run's backend; ``BackendMismatch`` if Keras in this
    process runs another (see ``config.backend``).
    """
    global _sessions_prepared
    if backend_name is not None:
        backend.check_loaded(backend_name)
    # Garbage collection frees an earlier job's models and graphs; it takes
    # ~0.2 s, so the first job of a process, with nothing to free, skips it.
    keras.backend.clear_session(free_memory=_sessions_prepared > 0)
    _sessions_prepared += 1
    name = keras.backend.backend()
    if name == "tensorflow":
        forget_traced_gradients()
    keras.utils.set_random_seed(seed)
    keras.mixed_precision.set_global_policy(precision)
    set_determinism(name, deterministic)


def set_determinism(name: str, deterministic: bool) -> None:
    """Deterministic kernels for this job, or not: set either way, since the
    setting is process-wide and would otherwise leak from one job of an
    in-process sweep into the next."""
    if name == "tensorflow":
        import tensorflow as tf

        if deterministic:
            tf.config.experimental.enable_op_determinism()
        else:
            # TensorFlow has no public switch back; this is the one its own enable uses.
            from tensorflow.python.framework import config as tf_config

            disable = getattr(tf_config, "disable_op_determinism", None)
            if disable is not None:
                disable()
    elif name == "torch":
        import torch

        torch.use_deterministic_algorithms(deterministic, warn_only=True)
    # JAX: XLA's deterministic GPU kernels are a start-up flag, set by
    # ``config.backend.activate`` before JAX starts.


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
    from tensorflow.python.framework import ops as tf_ops

    registry = getattr(getattr(tf_ops, "gradient_registry", None), "_registry", None)
    if isinstance(registry, dict):
        for name in [name for name in registry if name.startswith("CustomGradient-")]:
            del registry[name]
