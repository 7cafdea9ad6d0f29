"""The work of the search sweeper: search spaces, the study, and what to tell it.

Search spaces use Hydra's sweep syntax: ``choice(adam, rmsprop)``,
``range(32, 129, 32)``, ``interval(0.0, 0.5)``, ``tag(log, interval(1e-4, 1e-2))``.

A study means one thing: it records the settings its trials share (every
config value that is not searched, the search space, the objective) when it
is created, and a search with other settings refuses to continue it. Within
a study, values that were already trained are not trained again.
"""

from __future__ import annotations

import json
import logging
import math
from typing import Any

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import ChoiceSweep, IntervalSweep, Override, RangeSweep

from hydra_plugins.mnist_runner_search.config import OBJECTIVES, SearchSweeperConf
from mnist_runner.errors import UserError
from mnist_runner.sweeps.trials import median_pruner

log = logging.getLogger(__name__)
INTERRUPTED = "mnist_runner.interrupted"  # a trial's system attribute


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


def short(value: Any) -> str:
    """A trial's value for people: floats to 4 significant digits."""
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def describe_trial(trial, objective: str) -> str:
    """``3: trainer.learning_rate=0.000575, trainer.optimizer=adam -> best_val_accuracy 0.9731``."""
    params = ", ".join(f"{key}={short(value)}" for key, value in trial.params.items())
    values = ", ".join(f"{name} {value:.4f}" for (name, _), value in zip(OBJECTIVES[objective], trial.values))
    return f"{trial.number}: {params} -> {values}"


def prunes(conf: SearchSweeperConf) -> bool:
    return conf.pruning and len(OBJECTIVES[conf.objective]) == 1  # Optuna prunes single objectives only


# The study's user attribute that holds the settings its trials share.
SETTINGS_ATTR = "mnist_runner.settings"
# Config keys that do not change what a trial measures: where it is logged,
# which trial it is, where checkpoints go.
NOT_SETTINGS = ("tracking", "search", "resume", "trainer.checkpoint_dir")
# Fewer completed trials tell nothing about which parameter matters.
MIN_TRIALS_FOR_IMPORTANCE = 3


class StudyMismatch(UserError):
    """The study exists with other settings: continuing it would mix trials that measure different things."""


def flatten(node: Any, prefix: str = "") -> dict[str, Any]:
    """A nested config as ``{"trainer.epochs": 10, ...}``; lists stay values."""
    if not isinstance(node, dict):
        return {prefix: node}
    flat: dict[str, Any] = {}
    for key, value in node.items():
        flat.update(flatten(value, f"{prefix}.{key}" if prefix else str(key)))
    return flat


def under(key: str, prefixes) -> bool:
    """Whether ``key`` is one of ``prefixes`` or inside one (``model`` holds ``model.dropout``)."""
    return any(key == prefix or key.startswith(f"{prefix}.") for prefix in prefixes)


def study_settings(task_config: Any, space: dict[str, Any], objective: str) -> dict[str, str]:
    """What makes a study's trials comparable, as text: every value of the
    trials' config that is not searched (``trainer.epochs``, ``data.train_samples``,
    ...), each searched key's distribution (``search space: ...``) and the
    objective. ``task_config`` is the multirun's config (Hydra leaves the
    swept values out of it); its ``hydra`` node is ignored."""
    import optuna.distributions as dist
    from omegaconf import DictConfig, OmegaConf

    if isinstance(task_config, DictConfig):
        keys = [key for key in task_config if key != "hydra"]
        task = OmegaConf.masked_copy(task_config, keys)
        try:
            task_config = OmegaConf.to_container(task, resolve=True)
        except Exception:  # an interpolation only Hydra can resolve: compare it unresolved
            task_config = OmegaConf.to_container(task, resolve=False)
    settings = {
        key: json.dumps(value)
        for key, value in flatten({k: v for k, v in task_config.items() if k != "hydra"}).items()
        if not under(key, NOT_SETTINGS) and not under(key, [searched.lstrip("+~") for searched in space])
    }
    settings.update({f"search space: {key}": dist.distribution_to_json(d) for key, d in space.items()})
    settings["objective"] = objective
    return settings


def setting_differences(stored: dict[str, str], current: dict[str, str]) -> list[str]:
    """``key: <study's value> in the study, <value> now`` for each setting that differs."""
    missing = "(not set)"
    return [
        f"{key}: {stored.get(key, missing)} in the study, {current.get(key, missing)} now"
        for key in sorted(set(stored) | set(current))
        if stored.get(key) != current.get(key)
    ]


def free_study_name(storage, name: str) -> str:
    """``name-2``, ``name-3``, ...: the first name no study in ``storage`` has."""
    taken = {summary.study_name for summary in storage.get_all_studies()}
    number = 2
    while f"{name}-{number}" in taken:
        number += 1
    return f"{name}-{number}"


def check_settings(study, storage, conf: SearchSweeperConf, settings: dict[str, str]) -> None:
    """Record the settings of a new study; refuse a study made with other
    settings, naming the differences. A study without a record (made before
    records were kept) or without finished trials takes the current ones."""
    stored = study.user_attrs.get(SETTINGS_ATTR)
    finished = counted_trials(study)
    if stored is not None and finished:
        differences = setting_differences(stored, settings)
        if differences:
            listed = "\n".join(f"  {line}" for line in differences)
            raise StudyMismatch(
                f"hydra.sweeper.study_name={conf.study_name}: the study in {conf.storage} has {finished} trial(s) "
                f"made with other settings, and new trials would not be comparable with them:\n{listed}\n"
                f"Run it with the study's settings to continue it, or start a new study: "
                f"hydra.sweeper.study_name={free_study_name(storage, conf.study_name)}"
            )
        return
    if stored is None and finished:
        log.warning(
            "study %r has %d trial(s) but no record of their settings: they cannot be checked; "
            "the current settings are recorded from now on",
            conf.study_name,
            finished,
        )
    study.set_user_attr(SETTINGS_ATTR, settings)


def make_study(conf: SearchSweeperConf, settings: dict[str, str] | None = None):
    """Create or load the study, refusing one made with other ``settings``
    (``study_settings``; None: no check); trials a previous, interrupted
    search left RUNNING are marked FAIL so they do not count. The sampler's
    seed is ``seed`` plus the trials the study already has: a resumed search
    does not draw the same values again."""
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
    if settings is not None:
        check_settings(study, storage, conf, settings)
    study_id = storage.get_study_id_from_name(conf.study_name)
    for trial in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, trial.number)
        storage.set_trial_system_attr(trial_id, INTERRUPTED, True)
        storage.set_trial_state_values(trial_id, optuna.trial.TrialState.FAIL)
        log.info("trial %d was left running by an interrupted search: marked FAIL", trial.number)
    study.sampler = optuna.samplers.TPESampler(seed=conf.seed + len(study.trials))
    return study


def counted_trials(study) -> int:
    """Trials that count towards ``n_trials``: completed, pruned or failed,
    as Optuna's own ``optimize(n_trials=...)`` counts them (a search whose
    every trial fails would otherwise never end)."""
    import optuna

    states = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED, optuna.trial.TrialState.FAIL)
    # A trial cut short by an interrupted search is run again: it does not count.
    return sum(not t.system_attrs.get(INTERRUPTED) for t in study.get_trials(deepcopy=False, states=states))


def finished_trials(study) -> list:
    """Trials whose result is known: completed or pruned."""
    import optuna

    states = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
    return study.get_trials(deepcopy=False, states=states)


def same_values(study, params: dict[str, Any]):
    """The finished trial with exactly these values, or None."""
    return next((trial for trial in finished_trials(study) if trial.params == params), None)


def reuse_result(study, trial, earlier) -> None:
    """Tell ``trial`` the result of ``earlier``, a trial with the same values:
    the sampler learns it, nothing is trained twice. Marked ``duplicate_of``."""
    import optuna

    trial.set_user_attr("duplicate_of", earlier.number)
    if earlier.state == optuna.trial.TrialState.COMPLETE:
        study.tell(trial, earlier.values)
    else:
        study.tell(trial, state=earlier.state)


def space_size(space: dict[str, Any]) -> int | None:
    """How many distinct value combinations the space has; None when infinite (a float interval)."""
    import optuna.distributions as dist

    size = 1
    for distribution in space.values():
        if isinstance(distribution, dist.CategoricalDistribution):
            size *= len(distribution.choices)
        elif isinstance(distribution, dist.IntDistribution):
            size *= len(range(distribution.low, distribution.high + 1, distribution.step))
        else:
            return None
    return size


def exhausted(study, space: dict[str, Any]) -> bool:
    """Whether every combination of a finite space has a finished trial."""
    size = space_size(space)
    if size is None:
        return False
    tried = {json.dumps(trial.params, sort_keys=True, default=str) for trial in finished_trials(study)}
    return len(tried) >= size


def param_importances(study, space: dict[str, Any], seed: int) -> dict[str, float] | None:
    """fANOVA importance of each searched key for the (first) objective, or
    None with fewer than ``MIN_TRIALS_FOR_IMPORTANCE`` completed trials."""
    import optuna

    complete = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    if len(complete) < MIN_TRIALS_FOR_IMPORTANCE or not space:
        return None
    target = (lambda trial: trial.values[0]) if len(study.directions) > 1 else None
    evaluator = optuna.importance.FanovaImportanceEvaluator(seed=seed)
    try:
        found = optuna.importance.get_param_importances(study, evaluator=evaluator, params=list(space), target=target)
    except (RuntimeError, ValueError) as error:  # e.g. a param that never varied
        log.warning("parameter importances could not be computed: %s", error)
        return None
    return {key: float(value) for key, value in found.items()}
