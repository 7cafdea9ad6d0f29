"""The job side of a search: report each epoch's val_accuracy to the trial and
stop the run when Optuna's pruner says the trial is hopeless."""

from __future__ import annotations

import keras
import optuna
from omegaconf import DictConfig

from mnist_runner.errors import RunPruned
from mnist_runner.sweeps.trials import median_pruner


class PruningReporter(keras.callbacks.Callback):
    def __init__(self, storage: str, study_name: str, trial_number: int, pruner: optuna.pruners.BasePruner):
        super().__init__()
        self.storage = optuna.storages.RDBStorage(storage)
        self.study = optuna.load_study(study_name=study_name, storage=self.storage, pruner=pruner)
        study_id = self.storage.get_study_id_from_name(study_name)
        self.trial_id = self.storage.get_trial_id_from_study_id_trial_number(study_id, trial_number)

    def on_epoch_end(self, epoch, logs=None):
        value = float((logs or {})["val_accuracy"])
        self.storage.set_trial_intermediate_value(self.trial_id, epoch + 1, value)
        trial = self.storage.get_trial(self.trial_id)
        if self.study.pruner.prune(self.study, trial):
            raise RunPruned(f"pruned by the search after epoch {epoch + 1} (val_accuracy {value:.4f})")


def trial_callbacks(cfg: DictConfig) -> list[keras.callbacks.Callback]:
    """A trial of a pruning search reports its epochs to Optuna (the search
    sweeper sets ``search.*``); any other job gets nothing."""
    if "search" not in cfg or cfg.search.warmup_epochs is None:
        return []
    trial = cfg.search
    return [PruningReporter(trial.storage, trial.study_name, trial.trial_number, median_pruner(trial.warmup_epochs))]
