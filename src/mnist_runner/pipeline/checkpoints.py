"""A checkpoint after every epoch, so an interrupted run can be resumed:
``python run.py resume=<run id>``.

Each run keeps its checkpoint in ``<trainer.checkpoint_dir>/<run id>/``: the
model with its optimizer state (``epoch-N.keras``) and ``state.json`` naming
the newest complete one. Files are written under a temporary name and renamed,
so a crash mid-save never leaves a checkpoint that looks complete. A run that
finishes removes its checkpoint (the model is in MLflow by then).
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import keras

from mnist_runner.errors import UserError

STATE = "state.json"


class EpochCheckpoint(keras.callbacks.Callback):
    def __init__(self, folder: Path):
        super().__init__()
        self.folder = folder

    def on_epoch_end(self, epoch, logs=None):
        self.folder.mkdir(parents=True, exist_ok=True)
        name = f"epoch-{epoch + 1}.keras"
        partial = self.folder / f"{name}.part.keras"  # Keras insists on the .keras suffix
        self.model.save(partial)
        os.replace(partial, self.folder / name)
        previous = read_state(self.folder)
        write_json(self.folder / STATE, {"epochs_done": epoch + 1, "model": name})
        if previous and previous["model"] != name:
            (self.folder / previous["model"]).unlink(missing_ok=True)


def write_json(path: Path, value: dict) -> None:
    partial = path.with_suffix(".part")
    partial.write_text(json.dumps(value))
    os.replace(partial, path)


def read_state(folder: Path) -> dict | None:
    path = folder / STATE
    return json.loads(path.read_text()) if path.is_file() else None


@dataclass(frozen=True)
class Checkpoint:
    folder: Path
    model_file: Path
    epochs_done: int


def latest(folder: Path | None, run_id: str) -> Checkpoint:
    """The newest complete checkpoint of run ``run_id`` in ``folder``."""
    state = read_state(folder) if folder is not None else None
    if state is None:
        raise UserError(
            f"resume={run_id}: no checkpoint in {folder}; only runs trained with "
            "trainer.checkpoint_dir set, and not finished, can be resumed"
        )
    return Checkpoint(folder=folder, model_file=folder / state["model"], epochs_done=int(state["epochs_done"]))


def load_model(checkpoint: Checkpoint, run_id: str) -> keras.Model:
    """The compiled model of ``checkpoint``, optimizer state included."""
    return keras.saving.load_model(checkpoint.model_file, safe_mode=True)


def remove(folder: Path) -> None:
    shutil.rmtree(folder, ignore_errors=True)
