"""Code a launched ``run.py`` imports at start-up, for tests that change one
thing inside it: a ``sitecustomize.py`` in a folder of the test's own, put
first on the process's PYTHONPATH by ``hook_env``."""

from __future__ import annotations

import os
from pathlib import Path

# MLflow sets SQLite's lock wait to a fixed 20 s in every session it opens
# (``PRAGMA busy_timeout = 20000`` in mlflow/store/db/utils.py), with no
# setting to change it. A test that only needs a lock to be seen rewrites that
# statement to wait ``$MNIST_TEST_SQLITE_WAIT_MS`` instead: what the run does
# when the wait runs out is the same, only sooner.
SHORT_SQLITE_LOCK_WAIT = """
import os

from sqlalchemy import event
from sqlalchemy.engine import Engine


@event.listens_for(Engine, "before_cursor_execute", retval=True)
def _shorter_lock_wait(conn, cursor, statement, parameters, context, executemany):
    if statement.startswith("PRAGMA busy_timeout"):
        statement = f"PRAGMA busy_timeout = {int(os.environ['MNIST_TEST_SQLITE_WAIT_MS'])};"
    return statement, parameters
"""


def hook_env(folder: Path, code: str, **env: str) -> dict[str, str]:
    """Write ``code`` as ``folder/sitecustomize.py``; the environment a
    launched process needs to import it (and ``env``)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "sitecustomize.py").write_text(code)
    path = os.pathsep.join(part for part in (str(folder), os.environ.get("PYTHONPATH", "")) if part)
    return {"PYTHONPATH": path, **env}


def short_sqlite_lock_wait(folder: Path, milliseconds: int) -> dict[str, str]:
    """The environment in which MLflow waits ``milliseconds`` for a locked SQLite store."""
    return hook_env(folder, SHORT_SQLITE_LOCK_WAIT, MNIST_TEST_SQLITE_WAIT_MS=str(milliseconds))


# Says at exit whether the process imported Keras (or TensorFlow): for a test
# that a command refused its input before paying for that import.
REPORT_KERAS_IMPORT = """
import atexit
import sys


def _report():
    imported = "keras" in sys.modules or "tensorflow" in sys.modules
    print("KERAS_IMPORTED" if imported else "KERAS_NOT_IMPORTED", file=sys.stderr, flush=True)


atexit.register(_report)
"""


def report_keras_import(folder: Path) -> dict[str, str]:
    """The environment in which a launched process prints ``KERAS_IMPORTED``
    or ``KERAS_NOT_IMPORTED`` to its standard error as it exits."""
    return hook_env(folder, REPORT_KERAS_IMPORT)


# A sitecustomize that replaces one function of a module of the runner as the
# module is imported: by what ``wrap(original)`` returns, ``wrap`` defined by
# the code given to ``replaced_on_import``.
REPLACE_ON_IMPORT = """
import importlib.abc
import importlib.machinery
import sys

{wrap}

class _ReplaceOnImport(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name != {module!r}:
            return None
        sys.meta_path.remove(self)
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        load = spec.loader.exec_module

        def exec_module(module):
            load(module)
            owner = module
            for part in {owners!r}:
                owner = getattr(owner, part)
            setattr(owner, {name!r}, wrap(getattr(owner, {name!r})))

        spec.loader.exec_module = exec_module
        return spec


sys.meta_path.insert(0, _ReplaceOnImport())
"""


def replaced_on_import(module: str, attribute: str, wrap: str) -> str:
    """``sitecustomize`` code that replaces ``module``'s ``attribute`` (a
    function, or a class's method: ``EpochLogger.on_epoch_end``) as the module
    is imported, by ``wrap(original)``; ``wrap`` is Python code defining it."""
    *owners, name = attribute.split(".")
    return REPLACE_ON_IMPORT.format(wrap=wrap, module=module, owners=owners, name=name)


# Every epoch of the launched run ends with a pause, after it is logged: a run
# that stays alive (its heartbeat beating) for as long as a test must watch it,
# without the CPU of training that long.
SLOW_EPOCHS = replaced_on_import(
    "mnist_runner.tracking.epoch_logger",
    "EpochLogger.on_epoch_end",
    """
import os
import select


def wrap(logged):
    def on_epoch_end(self, epoch, logs=None):
        logged(self, epoch, logs)
        # Not time.sleep: under libfaketime its absolute deadline is refused (EINVAL).
        select.select([], [], [], float(os.environ["MNIST_TEST_EPOCH_PAUSE"]))

    return on_epoch_end
""",
)


def slow_epochs(folder: Path, seconds: float) -> dict[str, str]:
    """The environment in which every epoch of a launched run ends with a
    pause of ``seconds``."""
    return hook_env(folder, SLOW_EPOCHS, MNIST_TEST_EPOCH_PAUSE=str(seconds))


# The Nth run a sweep finishes in the background (its test set and records,
# while the next job trains) holds before its test results are logged, until
# a file appears: a test can stop the sweep at that moment, then let it go on.
PAUSED_FINISHING = replaced_on_import(
    "mnist_runner.tracking.records",
    "log_test_results",
    """
import os
import select
import threading
import time
from pathlib import Path

_finished_in_background = 0


def wrap(logged):
    def log_test_results(*args, **kwargs):
        global _finished_in_background
        if threading.current_thread() is not threading.main_thread():
            _finished_in_background += 1
            if _finished_in_background == int(os.environ["MNIST_TEST_PAUSED_FINISHING"]):
                release, deadline = Path(os.environ["MNIST_TEST_FINISHING_RELEASE"]), time.monotonic() + 120
                while not release.exists() and time.monotonic() < deadline:
                    select.select([], [], [], 0.1)
        return logged(*args, **kwargs)

    return log_test_results
""",
)


def paused_finishing(folder: Path, nth: int) -> tuple[dict[str, str], Path]:
    """The environment in which the ``nth`` run that a sweep finishes in the
    background holds before its test results are logged, until the file
    returned is created (at most 2 minutes)."""
    release = folder / "release"
    return hook_env(
        folder, PAUSED_FINISHING, MNIST_TEST_PAUSED_FINISHING=str(nth), MNIST_TEST_FINISHING_RELEASE=str(release)
    ), release
