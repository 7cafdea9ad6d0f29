"""The Keras side of ``checkpoints``: the callback that writes a checkpoint
after every epoch, and loading a checkpoint's model to continue from it."""

from __future__ import annotations

import json
import os
from pathlib import Path

import keras

from mnist_runner.pipeline.checkpoints import KEEP, Checkpoint, complete_epochs, remove_partial_files, write_atomically


class EpochCheckpoint(keras.callbacks.Callback):
    """Writes epoch N's checkpoint at the end of epoch N (before the MLflow
    logger sees it). ``history`` holds the rows of epochs done before this
    training started (a resumed run)."""

    def __init__(self, folder: Path, history: list[dict] | None = None):
        super().__init__()
        self.folder = folder
        self.history = list(history or [])

    def on_train_begin(self, logs=None):
        self.folder.mkdir(parents=True, exist_ok=True)
        remove_partial_files(self.folder)

    def on_epoch_end(self, epoch, logs=None):
        done = epoch + 1
        self.history.append({"epoch": done, **{key: float(value) for key, value in (logs or {}).items()}})
        write_atomically(self.folder / f"epoch-{done}.json", json.dumps(self.history).encode())
        partial = self.folder / f"epoch-{done}.part.keras"  # Keras insists on the .keras suffix
        self.model.save(partial)
        os.replace(partial, self.folder / f"epoch-{done}.keras")
        for older in complete_epochs(self.folder)[KEEP:]:
            for suffix in (".keras", ".json"):
                (self.folder / f"epoch-{older}{suffix}").unlink(missing_ok=True)


def load_model(checkpoint: Checkpoint) -> keras.Model:
    """The compiled model of ``checkpoint``, optimizer state included."""
    return keras.saving.load_model(checkpoint.model_file, safe_mode=True)
