"""Hyperparameter search with Optuna's ask/tell API, as a Hydra sweeper.

``hydra/sweeper=optuna_search`` (registered by the plugin in
``src/hydra_plugins/mnist_runner_search``) asks Optuna for each trial's
values, launches the trial as an ordinary job through Hydra's launcher (so it
is an MLflow child run of the sweep like any other), and tells Optuna the
result. The study lives in SQLite, so a search that was interrupted resumes
where it stopped; trials report validation accuracy per epoch and hopeless
ones are pruned.

Search spaces use Hydra's sweep syntax: ``choice(adam, rmsprop)``,
``range(32, 129, 32)``, ``interval(0.0, 0.5)``, ``tag(log, interval(1e-4, 1e-2))``.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import Any, Optional

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import ChoiceSweep, IntervalSweep, Override, RangeSweep

from mnist_runner.errors import UserError

log = logging.getLogger(__name__)

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


def distribution(override: Override):
    """The Optuna distribution of one search-space entry."""
    import optuna.distributions as dist

    value = override.value()
    key = override.get_key_element()
    log_scale = "log" in getattr(value, "tags", set())
    if isinstance(value, ChoiceSweep):
        return dist.CategoricalDistribution([v for v in override.sweep_iterator(transformer=lambda x: x)])
    if isinstance(value, RangeSweep):
        values = list(override.sweep_iterator(transformer=lambda x: x))
        if all(isinstance(v, int) for v in values):
            step = int(value.step) if value.step else 1
            return dist.IntDistribution(min(values), max(values), step=step, log=log_scale and step == 1)
        return dist.CategoricalDistribution(values)
    if isinstance(value, IntervalSweep):
        low, high = value.start, value.end
        if isinstance(low, int) and isinstance(high, int) and not log_scale:
            return dist.IntDistribution(low, high)
        return dist.FloatDistribution(float(low), float(high), log=log_scale)
    raise UserError(
        f"hydra.sweeper.params.{key}={override.get_value_element_as_str()}: a search space is "
        "choice(a, b, ...), range(start, stop, step) or interval(low, high), optionally tag(log, ...)"
    )


def search_space(params: dict[str, str], arguments: list[str]) -> tuple[dict[str, Any], list[str]]:
    """Split the sweep into Optuna distributions (keyed by config key) and the
    fixed overrides every trial gets; the command line wins over ``params``."""
    overrides = [f"{k}={v}" for k, v in params.items()] + list(arguments)
    space: dict[str, Any] = {}
    fixed: dict[str, str] = {}
    for override in OverridesParser.create().parse_overrides(overrides):
        key = override.get_key_element()
        if override.is_sweep_override():
            space[key] = distribution(override)
            fixed.pop(key, None)
        else:
            fixed[key] = f"{key}={override.get_value_element_as_str()}"
            space.pop(key, None)
    return space, list(fixed.values())


def trial_overrides(params: dict[str, Any]) -> list[str]:
    return [f"{key}={value}" for key, value in params.items()]


def objective_values(objective: str, metrics: dict[str, float] | None) -> list[float] | None:
    """The values to tell Optuna, or None when the trial's job failed or was pruned."""
    if not metrics or metrics.get("pruned"):
        return None
    values = [float(metrics[name]) for name, _ in OBJECTIVES[objective]]
    return None if any(math.isnan(v) for v in values) else values


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
        return [f"++search.storage={self.storage}", f"++search.study_name={self.study_name}",
                f"++search.trial_number={self.trial_number}", f"++search.warmup_epochs={warmup}"]


def median_pruner(warmup_epochs: int):
    """Prune a trial whose val_accuracy is below the median of earlier trials at
    the same epoch. Optuna does not store pruners with the study, so the sweeper
    and every job build the same one from this function."""
    import optuna

    return optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=warmup_epochs)


def prunes(conf: SearchSweeperConf) -> bool:
    return conf.pruning and len(OBJECTIVES[conf.objective]) == 1  # Optuna prunes single objectives only


def make_study(conf: SearchSweeperConf):
    """Create or load the study; trials a previous, interrupted search left
    RUNNING are marked FAIL so they do not count."""
    import optuna

    if conf.objective not in OBJECTIVES:
        raise UserError(f"hydra.sweeper.objective={conf.objective!r}: choose one of {', '.join(OBJECTIVES)}")
    directions = [direction for _, direction in OBJECTIVES[conf.objective]]
    pruner = median_pruner(conf.pruning_warmup_epochs) if prunes(conf) else optuna.pruners.NopPruner()
    storage = optuna.storages.RDBStorage(conf.storage)
    study = optuna.create_study(
        storage=storage, study_name=conf.study_name, directions=directions,
        sampler=optuna.samplers.TPESampler(seed=conf.seed), pruner=pruner, load_if_exists=True,
    )
    study_id = storage.get_study_id_from_name(conf.study_name)
    for trial in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, trial.number)
        storage.set_trial_state_values(trial_id, optuna.trial.TrialState.FAIL)
        log.info("trial %d was left running by an interrupted search: marked FAIL", trial.number)
    return study


def counted_trials(study) -> int:
    """Trials that count towards ``n_trials``: completed or pruned."""
    import optuna

    states = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
    return len(study.get_trials(deepcopy=False, states=states))
