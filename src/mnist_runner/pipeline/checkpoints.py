"""A checkpoint after every epoch, so an interrupted run can be resumed:
``python run.py resume=<run id>``.

Each run keeps its checkpoints in ``<trainer.checkpoint_dir>/<run id>/``. The
checkpoint of epoch N is two files: ``epoch-N.json``, the history of epochs
1..N as Keras reported them, and ``epoch-N.keras``, the model with its
optimizer state. Each is written under a temporary name and renamed, the
model last: a checkpoint counts only once both exist, so a process killed
mid-save never leaves one that looks complete (``find`` removes the
leftovers). The two newest are kept, so a checkpoint that turns out to be
unreadable has an earlier one to fall back on. The checkpoint is written
before the epoch is logged to MLflow, so a resume can log an epoch whose
logging was cut short, and never logs one twice. A run that finishes
removes its checkpoints (the model is in MLflow by then).

This module reads and writes the files and needs no Keras, so that a resume
that cannot go on is refused before Keras loads; ``checkpoint_callback``
holds the Keras side (the callback that saves, and loading a model).
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import zipfile
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

KEEP = 2
EPOCH_FILE = re.compile(r"^epoch-(\d+)\.(json|keras)$")
# What Keras writes into a .keras file (a zip archive).
KERAS_MEMBERS = ("config.json", "model.weights.h5")


@dataclass(frozen=True)
class Checkpoint:
    epochs_done: int
    model_file: Path
    history: list[dict]  # one row per epoch, ``epoch`` counted from 1


def write_atomically(path: Path, data: bytes) -> None:
    partial = path.with_name(path.name + ".part")
    partial.write_bytes(data)
    os.replace(partial, path)


def remove_partial_files(folder: Path) -> list[Path]:
    """Delete what a process killed mid-save left: ``*.part*`` files, and an
    epoch's history whose model was never completed."""
    removed = [path for path in folder.glob("*.part*")]
    complete = set(complete_epochs(folder))
    for path in folder.glob("epoch-*.json"):
        match = EPOCH_FILE.match(path.name)
        if match and int(match.group(1)) not in complete:
            removed.append(path)
    for path in removed:
        path.unlink(missing_ok=True)
    return removed


def complete_epochs(folder: Path) -> list[int]:
    """Epochs with both checkpoint files, newest first."""
    found: dict[int, set[str]] = {}
    for path in folder.glob("epoch-*"):
        match = EPOCH_FILE.match(path.name)
        if match:
            found.setdefault(int(match.group(1)), set()).add(match.group(2))
    return sorted((epoch for epoch, kinds in found.items() if kinds == {"json", "keras"}), reverse=True)


def find(folder: Path) -> tuple[Checkpoint | None, list[str]]:
    """The newest readable checkpoint in ``folder`` (None if there is none),
    and why newer ones were passed over. Leftovers of interrupted saves are
    removed first."""
    if not folder.is_dir():
        return None, []
    remove_partial_files(folder)
    skipped = []
    for epoch in complete_epochs(folder):
        problem = unreadable(folder, epoch)
        if problem is None:
            history = json.loads((folder / f"epoch-{epoch}.json").read_text())
            return Checkpoint(epochs_done=epoch, model_file=folder / f"epoch-{epoch}.keras", history=history), skipped
        skipped.append(f"epoch {epoch}: {problem}")
    return None, skipped


def unreadable(folder: Path, epoch: int) -> str | None:
    """Why epoch ``epoch``'s checkpoint cannot be used, or None. Checks the
    history and the model archive's integrity (CRCs) without loading Keras."""
    try:
        history = json.loads((folder / f"epoch-{epoch}.json").read_text())
        if not isinstance(history, list) or [row.get("epoch") for row in history] != list(range(1, epoch + 1)):
            return f"epoch-{epoch}.json does not hold epochs 1-{epoch}"
    except (OSError, ValueError, AttributeError) as error:
        return f"epoch-{epoch}.json is corrupt ({error})"
    try:
        with zipfile.ZipFile(folder / f"epoch-{epoch}.keras") as archive:
            missing = [name for name in KERAS_MEMBERS if name not in archive.namelist()]
            bad = archive.testzip()
        if missing or bad:
            return f"epoch-{epoch}.keras is incomplete ({', '.join(missing) or bad})"
    except (OSError, zipfile.BadZipFile, EOFError) as error:
        return f"epoch-{epoch}.keras is corrupt ({error})"
    return None


def remove(folder: Path) -> None:
    shutil.rmtree(folder, ignore_errors=True)
