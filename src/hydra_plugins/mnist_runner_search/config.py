"""The search sweeper's settings (``hydra.sweeper.*`` of ``hydra/sweeper=optuna_search``)."""

# No `from __future__ import annotations`: Hydra's plugin scan runs this module
# outside sys.modules, where dataclasses cannot resolve string annotations.
from dataclasses import dataclass, field

OBJECTIVES = {
    # name -> [(metric returned by the job, direction), ...]
    "val_accuracy": [("best_val_accuracy", "maximize")],
    "val_accuracy_and_gap": [("best_val_accuracy", "maximize"), ("final_overfit_gap", "minimize")],
}


@dataclass
class SearchSweeperConf:
    _target_: str = "hydra_plugins.mnist_runner_search.search_sweeper.SearchSweeper"
    # The search space: config key -> choice(...), range(...) or interval(...).
    params: dict[str, str] = field(default_factory=dict)
    n_trials: int = 20
    # val_accuracy, or val_accuracy_and_gap (also minimise the final gap; no pruning then).
    objective: str = "val_accuracy"
    study_name: str = "mnist-search"
    # Where the study is kept; the same name and storage resume it.
    storage: str = "sqlite:///${project_root:}/runs/optuna.db"
    seed: int = 42
    # Stop trials whose per-epoch val_accuracy is below the median of earlier trials.
    pruning: bool = True
    # Epochs every trial trains before it may be pruned.
    pruning_warmup_epochs: int = 2
