"""Continuing an interrupted run: ``python run.py resume=<run id>``.

Everything resuming needs is built here, once, as one ``Resume`` value: the
run's own config (as it logged it, with the few overrides that make sense
when continuing), its newest readable checkpoint, and the epochs done so far.
``run_experiment`` takes it and goes on from there, in the same MLflow run.

A run can be resumed however it ended: Ctrl-C, SIGTERM, a failure, or a
process that was killed outright (the next command that opens the store
marks such a run KILLED; see ``tracking.liveness``). A run stopped before its
first checkpoint starts again from the beginning, in the same run.

Planning needs no Keras (``plan_resume`` reads the store and the checkpoint
files): ``run.py`` plans before it imports Keras, so a resume that is
refused is refused in about a second.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import pandas as pd
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import DictConfig, OmegaConf

from mnist_runner.errors import UserError
from mnist_runner.pipeline import checkpoints
from mnist_runner.tracking import run_history

if TYPE_CHECKING:
    import keras

log = logging.getLogger(__name__)
MISSING = object()

# What may change when a run continues; anything else would make it another run.
RESUME_OVERRIDES = {
    "trainer.epochs": "train for more epochs",
    "trainer.checkpoint_dir": "where the checkpoints were moved",
    "data.path": "where the data files are now (they are verified as before)",
    "tracking.uri": "the store holding the run",
}


@dataclass(frozen=True)
class Resume:
    run_id: str
    checkpoint: checkpoints.Checkpoint | None  # None: no epoch was completed, start over
    logged_epochs: frozenset[int]  # epochs whose metrics the store already has

    @property
    def epochs_done(self) -> int:
        return self.checkpoint.epochs_done if self.checkpoint else 0

    @property
    def history(self) -> pd.DataFrame | None:
        """The epochs done before the interruption, as Keras reported them."""
        return pd.DataFrame(self.checkpoint.history) if self.checkpoint else None

    def unlogged_history(self) -> list[dict]:
        """Epochs of the checkpoint whose logging the interruption cut short."""
        rows = self.checkpoint.history if self.checkpoint else []
        return [row for row in rows if row["epoch"] not in self.logged_epochs]

    def load_model(self) -> keras.Model:
        """The compiled model, optimizer state included, as it was after ``epochs_done`` epochs."""
        from mnist_runner.pipeline.checkpoint_callback import load_model

        return load_model(self.checkpoint)


def plan_resume(cfg: DictConfig, run_id: str, overrides: Sequence[str] = ()) -> tuple[DictConfig, Resume]:
    """The config to continue run ``run_id`` with (its own, from the store at
    ``cfg.tracking.uri``, with the allowed ``overrides`` applied from ``cfg``),
    and where it continues from."""
    stored_run = run_history.interrupted_run(cfg.tracking.uri, run_id)
    stored = OmegaConf.create(run_history.load_run_config(cfg.tracking.uri, run_id))
    for key in changed_keys(overrides, cfg, stored):
        OmegaConf.update(stored, key, OmegaConf.select(cfg, key), force_add=True)
    stored.tracking.uri = cfg.tracking.uri
    stored.resume = run_id

    folder = checkpoint_folder(stored, run_id)
    checkpoint, skipped = checkpoints.find(folder) if folder else (None, [])
    logged = run_history.logged_epochs(run_id)
    for reason in skipped:
        log.warning("resume=%s: checkpoint passed over: %s", run_id, reason)
    if checkpoint is None and (skipped or logged):
        why = f"its checkpoints are unreadable ({'; '.join(skipped)})" if skipped else f"there is none in {folder}"
        raise UserError(
            f"resume={run_id}: the run logged {len(logged)} epoch(s) but {why}; it cannot be continued. "
            "Start a new run (checkpoints need trainer.checkpoint_dir)"
        )
    resume = Resume(run_id=run_id, checkpoint=checkpoint, logged_epochs=frozenset(logged))
    if resume.epochs_done > stored.trainer.epochs:
        raise UserError(
            f"resume={run_id} trainer.epochs={stored.trainer.epochs}: the run has done {resume.epochs_done} "
            "epochs already; give more epochs, or leave trainer.epochs out to finish as planned"
        )
    again = sorted(epoch for epoch in logged if epoch > resume.epochs_done)
    if again:
        log.warning(
            "resume=%s: epochs %s were logged but their checkpoint is lost; they are trained and "
            "logged again (their metrics then have two values per step)",
            run_id,
            again,
        )
    log.info(
        "resuming run %s (%s, %s) from epoch %d of %d",
        run_id,
        stored_run.info.run_name,
        stored_run.info.status,
        resume.epochs_done,
        stored.trainer.epochs,
    )
    return stored, resume


def changed_keys(overrides: Sequence[str], cfg: DictConfig, stored: DictConfig) -> list[str]:
    """The config keys ``overrides`` change from the run's own ``stored``
    config (their values are in ``cfg``); refused unless continuing a run
    allows them (``RESUME_OVERRIDES``)."""
    keys = []
    for override in OverridesParser.create().parse_overrides(list(overrides)):
        key = override.get_key_element().lstrip("+~")
        if key == "resume" or key.startswith(("hydra.", "hydra/")):
            continue
        stored_value = OmegaConf.select(stored, key, default=MISSING)
        if stored_value is MISSING or isinstance(stored_value, DictConfig):
            # A config group or preset (model=cnn, experiment=course_cnn): another run.
            raise UserError(
                f"resume with {override.input_line}: a resumed run keeps its own config, so {key} cannot "
                "change (a config group or preset makes it another run). Start a new run for that"
            )
        if OmegaConf.select(cfg, key) == stored_value:
            continue  # given, but as the run had it
        if key not in RESUME_OVERRIDES:
            allowed = "; ".join(f"{k} ({why})" for k, why in RESUME_OVERRIDES.items())
            raise UserError(
                f"resume with {override.input_line}: a resumed run keeps its own config, so {key} cannot "
                f"change. Allowed with resume: {allowed}. Start a new run to change {key}"
            )
        keys.append(key)
    return keys


def checkpoint_folder(cfg: DictConfig, run_id: str) -> Path | None:
    """Where run ``run_id`` keeps its checkpoints; None without ``trainer.checkpoint_dir``."""
    folder = cfg.trainer.get("checkpoint_dir")
    return Path(folder) / run_id if folder else None
