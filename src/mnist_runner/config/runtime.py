"""Settings of the process that must be made before Keras is imported.

TensorFlow prints a handful of lines from its C++ code while it loads
(absl's "All log messages before absl::InitializeLog()", oneDNN's notice,
CPU features); no environment variable of TensorFlow 2.21 silences them, so
they are kept out by pointing the process's standard error at /dev/null for
the import. Python errors raised by the import still reach the user.
``verbose=true`` (or ``MNIST_RUNNER_VERBOSE=1``) leaves everything as it is.
"""

from __future__ import annotations

import contextlib
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


def import_keras(requested_verbose: bool = False) -> None:
    """Import Keras and its backend once, quietly unless verbose; also keep
    TensorFlow's Python warnings (``tf.function`` retracing in sweeps),
    MLflow's download progress bars and its system-metrics chatter out of
    normal runs."""
    loud = verbose(requested_verbose)
    if not loud:
        os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    with native_stderr_silenced(not loud and "keras" not in sys.modules):
        import keras  # noqa: F401
    if not loud:
        logging.getLogger("tensorflow").setLevel(logging.ERROR)
        # Its start and stop lines at every run; warnings still show.
        logging.getLogger("mlflow.system_metrics").setLevel(logging.WARNING)
