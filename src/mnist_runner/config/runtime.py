"""Settings of the process that must be made before Keras is imported.

TensorFlow prints a handful of lines from its C++ code while it loads
(absl's "All log messages before absl::InitializeLog()", oneDNN's notice,
CPU features); no environment variable of TensorFlow 2.21 silences them, so
they are kept out by pointing the process's standard error at /dev/null for
the import. Python errors raised by the import still reach the user.
``verbose=true`` (or ``MNIST_RUNNER_VERBOSE=1``) leaves everything as it is.

Python's garbage collector is paused while the frameworks load, and a
process that runs jobs takes what they loaded out of its reach before the
collector runs again (``loading_for_good``).
"""

from __future__ import annotations

import contextlib
import gc
import logging
import os
import sys
from typing import Iterator

VERBOSE_ENV = "MNIST_RUNNER_VERBOSE"


def verbose(requested: bool = False) -> bool:
    return requested or os.environ.get(VERBOSE_ENV) == "1"


@contextlib.contextmanager
def native_stderr_silenced(enabled: bool = True) -> Iterator[None]:
    """Within: what native code writes to standard error is dropped."""
    if not enabled:
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


@contextlib.contextmanager
def collection_paused() -> Iterator[None]:
    """Within: no garbage collection. Loading TensorFlow, MLflow and the rest
    creates about half a million objects that live as long as the process,
    and the collector, run every few thousand new objects, scans them again
    and again: about a second of the start-up of a run on 2 cores (5.4
    against 6.6 s for ``import keras``). Loading makes next to no garbage."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def import_keras(requested_verbose: bool = False) -> None:
    """Import Keras and its backend once, quietly unless verbose; also keep
    TensorFlow's Python warnings (``tf.function`` retracing in sweeps),
    MLflow's download progress bars and its system-metrics chatter out of
    normal runs."""
    loud = verbose(requested_verbose)
    if not loud:
        os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    with native_stderr_silenced(not loud and "keras" not in sys.modules), collection_paused():
        import keras  # noqa: F401
    if not loud:
        logging.getLogger("tensorflow").setLevel(logging.ERROR)
        # Its start and stop lines at every run; warnings still show.
        logging.getLogger("mlflow.system_metrics").setLevel(logging.WARNING)


@contextlib.contextmanager
def loading_for_good() -> Iterator[None]:
    """Within: what a process that runs jobs loads for its whole life (the
    frameworks, the project's modules), with collection paused
    (``collection_paused``); at the end, all of it frozen
    (``freeze_loaded_objects``) before the collector runs again. The other
    order costs 0.3 s a run: the pause leaves everything loaded in the
    collector's youngest generation, and its first pass, due at once, scans
    it all."""
    with collection_paused():
        yield
        freeze_loaded_objects()


_frozen = False


def freeze_loaded_objects() -> None:
    """Take every object that exists now out of the garbage collector's
    reach (``gc.freeze``), once per process: for a process of its own that
    runs jobs (``run.py``), after it loaded what they need. Each job frees
    the one before it with a full collection (``session``), and every full
    collection, Python's own during a run too, scanned all those objects for
    nothing: about 0.5 s each on 2 cores. Not in a notebook, where it would
    keep the user's objects of that moment from ever being freed."""
    global _frozen
    if not _frozen:
        # No collection first: the little garbage that loading leaves is
        # not worth the 0.5 s that this saves.
        gc.freeze()
        _frozen = True
