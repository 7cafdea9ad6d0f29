"""Continuing an interrupted run: ``python run.py resume=<run id>``.

Everything resuming needs is built here, once, as one ``Resume`` value: the
run's own config (as it logged it), its checkpoint, and the epochs it logged
before it stopped. ``run_experiment`` takes it and goes on from there.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import keras
import pandas as pd
from omegaconf import DictConfig, OmegaConf

from mnist_runner.pipeline import checkpoints
from mnist_runner.tracking import run_history


@dataclass(frozen=True)
class Resume:
    run_id: str
    checkpoint: checkpoints.Checkpoint
    history: pd.DataFrame  # the epochs logged before the interruption

    @property
    def epochs_done(self) -> int:
        return self.checkpoint.epochs_done

    def load_model(self) -> keras.Model:
        """The compiled model, optimizer state included, as it was after ``epochs_done`` epochs."""
        return checkpoints.load_model(self.checkpoint, self.run_id)


def plan_resume(tracking_uri: str, run_id: str) -> tuple[DictConfig, Resume]:
    """The config to continue run ``run_id`` with (its own, in the store at
    ``tracking_uri``), and where it continues from."""
    stored = OmegaConf.create(run_history.load_run_config(tracking_uri, run_id))
    stored.tracking.uri = tracking_uri
    checkpoint = checkpoints.latest(checkpoint_folder(stored, run_id), run_id)
    history = run_history.epoch_history(run_id, checkpoint.epochs_done)
    return stored, Resume(run_id=run_id, checkpoint=checkpoint, history=history)


def checkpoint_folder(cfg: DictConfig, run_id: str) -> Path | None:
    """Where run ``run_id`` keeps its checkpoint; None without ``trainer.checkpoint_dir``."""
    folder = cfg.trainer.get("checkpoint_dir")
    return Path(folder) / run_id if folder else None
