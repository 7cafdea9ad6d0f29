"""A new MLflow SQLite store for a fast test, in milliseconds instead of seconds.

Creating a store runs all of MLflow's schema migrations (seconds). They run
once per test process, through the project's own ``ensure_sqlite_store``, and
every test gets a copy of that file; ``tracking.store.connect`` then opens the
copy as it would any store, creating the test's experiment.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from functools import lru_cache
from pathlib import Path

from helpers import TempStore


@lru_cache(maxsize=None)
def store_template() -> Path:
    """The store every copy is made from, created by ``ensure_sqlite_store``."""
    from mnist_runner.tracking import store

    folder = Path(tempfile.mkdtemp(prefix="mnist-runner-test-store-"))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    path = folder / "mlflow.db"
    store.ensure_sqlite_store(path, "tracking.uri")
    return path


def keep_tracking_uri(monkeypatch) -> None:
    """Undo, when the test ends, what ``mlflow.set_tracking_uri`` changes
    (a module global and MLFLOW_TRACKING_URI, inherited by subprocesses)."""
    from mlflow.tracking._tracking_service import utils

    monkeypatch.setattr(utils, "_tracking_uri", utils._tracking_uri)
    if "MLFLOW_TRACKING_URI" in os.environ:
        monkeypatch.setenv("MLFLOW_TRACKING_URI", os.environ["MLFLOW_TRACKING_URI"])
    else:
        monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)


def migrated_store(root: Path) -> TempStore:
    """A ``TempStore`` in ``root`` whose SQLite file exists already, as after a
    first run: a copy of the template. ``run.py`` opens it as it opens any
    store (creating its experiment); a test of what happens where there is
    no store yet uses ``TempStore(root)`` itself."""
    temp = TempStore(root)
    root.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(store_template(), temp.db)
    return temp


def open_store(root: Path, monkeypatch, experiment: str = "exp") -> tuple[TempStore, str]:
    """A new store in ``root`` (a copy of the template), connected to as the
    project does; the store and the id of ``experiment`` in it."""
    from mnist_runner.tracking import store

    keep_tracking_uri(monkeypatch)
    temp = migrated_store(root)
    return temp, store.connect(temp.uri, experiment, str(temp.artifacts))
