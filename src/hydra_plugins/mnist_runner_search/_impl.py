"""The work of the search sweeper: search spaces, the study, and what to tell it.

Search spaces use Hydra's sweep syntax: ``choice(adam, rmsprop)``,
``range(32, 129, 32)``, ``interval(0.0, 0.5)``, ``tag(log, interval(1e-4, 1e-2))``.
"""

from __future__ import annotations

import logging
import math
from typing import Any

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import ChoiceSweep, IntervalSweep, Override, RangeSweep

from hydra_plugins.mnist_runner_search.config import OBJECTIVES, SearchSweeperConf
from mnist_runner.errors import UserError
from mnist_runner.sweeps.trials import median_pruner

log = logging.getLogger(__name__)


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
        storage=storage,
        study_name=conf.study_name,
        directions=directions,
        sampler=optuna.samplers.TPESampler(seed=conf.seed),
        pruner=pruner,
        load_if_exists=True,
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
