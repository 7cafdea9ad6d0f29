"""What a search's sweeper and its trial jobs agree on: which trial a job is
(``TrialRef``, handed to the job as ``search.*`` overrides) and how trials
are pruned. Imports neither Optuna nor Keras until used, so Hydra's plugin
scan stays fast."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional


@dataclass(frozen=True)
class TrialRef:
    """What a job needs to report its epochs to its trial (set as ``search.*``).
    ``warmup_epochs`` is None when the search does not prune."""

    storage: str
    study_name: str
    trial_number: int
    warmup_epochs: Optional[int]

    def overrides(self) -> list[str]:
        warmup = "null" if self.warmup_epochs is None else self.warmup_epochs
        return [
            f"++search.storage={self.storage}",
            f"++search.study_name={self.study_name}",
            f"++search.trial_number={self.trial_number}",
            f"++search.warmup_epochs={warmup}",
        ]


def median_pruner(warmup_epochs: int):
    """Prune a trial whose val_accuracy is below the median of earlier trials at
    the same epoch. Optuna does not store pruners with the study, so the sweeper
    and every job build the same one from this function."""
    import optuna

    return optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=warmup_epochs)
