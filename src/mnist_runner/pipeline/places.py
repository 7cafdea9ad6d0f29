"""Where a run writes, checked before TensorFlow loads: its checkpoint and
artifact folders must take a file, and its MLflow store must open. A run
that could not be recorded is refused in a second or two, with one line,
instead of after the several seconds that importing Keras takes."""

from __future__ import annotations

import os
from pathlib import Path

from omegaconf import DictConfig

from mnist_runner.errors import UserError
from mnist_runner.tracking import store


def open_run_places(cfg: DictConfig, opened_experiment: str | None = None) -> str:
    """Check the folders of ``cfg``'s run and connect to its store
    (``store.connect``: created if new, runs left behind closed); the id of
    the run's MLflow experiment.

    ``opened_experiment``: this process has connected to the run's store and
    experiment already (a sweep's parent run, for a job run in the sweep's
    own process, whose ``tracking.*`` cannot differ): only the folders are
    checked, not the store again (~0.04 s a job).
    """
    track = cfg.tracking
    check_writable(cfg.trainer.checkpoint_dir, "trainer.checkpoint_dir")
    if not store.is_server(track.uri):
        check_writable(track.artifact_location, "tracking.artifact_location")
    if opened_experiment is not None:
        return opened_experiment
    return store.connect(track.uri, track.experiment, track.artifact_location)


def check_writable(folder: str | None, key: str) -> None:
    """Fail before the run on a folder the run could not write into later."""
    if not folder:
        return
    path = Path(folder)
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / f".write-test-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as error:
        raise UserError(
            f"{key}={folder}: cannot write there ({error.strerror or error}); choose another folder"
        ) from error
