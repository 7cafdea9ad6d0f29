"""Continuing and extending a sweep: ``python run.py resume=<parent run id>``.

A sweep is its grid of jobs, recorded on its parent run (the ``sweep_overrides``
tag: a preset's ``hydra.sweeper.params`` and the command line's overrides,
and ``sweep_launcher``: the launcher and its settings). Continuing it runs the
same grid again under the same parent run, and each job looks up what the
sweep already has for it (``plan_jobs``), by its resolved config
(``job_key``), never by job number or folder:

- a FINISHED run is used as it is (the job trains nothing);
- a KILLED run (Ctrl-C, SIGTERM, a process killed outright and reaped)
  continues in that same run from its last checkpoint, as ``resume=`` does;
- a FAILED run is run again in a new run, which supersedes it;
- a job without a run is run.

Extending (``resume=<id> trainer.seed=1,2,3,4,5``) adds values to the grid:
the sweep becomes the union of what it had and what is given, and only the
jobs it lacks train. A fixed setting cannot change (that would make the runs
incomparable); a key the sweep did not set may become swept, keeping the
value its runs had among the values.

Hydra itself cannot resume a multirun; this module makes the command line
of the continued sweep (``continued_argv``, before Hydra starts) and the plan
that its jobs follow (in the sweep file that every job reads).
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections import defaultdict
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import DictConfig, OmegaConf

from mnist_runner.errors import UserError
from mnist_runner.paths import DEFAULT_TRACKING_URI
from mnist_runner.redaction import redact
from mnist_runner.tracking import sweep_records

log = logging.getLogger(__name__)

# The environment variable by which run.py tells the sweep callback which
# parent run the sweep continues (the callback runs in the same process).
CONTINUES_ENV = "MNIST_RUNNER_CONTINUES_SWEEP"
# Config keys that say where a run is logged, where its files go and how
# much it prints, not what it is: two runs that differ only in these are the
# same job (a sweep continued against a moved store or checkpoint folder).
NOT_THE_JOB = ("tracking", "trainer.checkpoint_dir", "data.path", "resume", "verbose")
# Overrides a continued sweep may change freely, being outside the job key.
FREE_KEYS = ("tracking.uri", "trainer.checkpoint_dir", "data.path", "verbose")

DONE, RESUME, RERUN, NEW = "done", "resume", "rerun", "new"
MASKED = "***"  # a credential's value, as redaction records it


def job_key(config: DictConfig | Mapping[str, Any]) -> str:
    """What makes a job this job: its resolved config but ``NOT_THE_JOB``."""
    values = OmegaConf.to_container(config, resolve=True) if isinstance(config, DictConfig) else dict(config)
    # A copy, as JSON shows it, credentials masked: a job is the same job with a new token.
    values = redact(json.loads(json.dumps(values, default=str)))
    values.pop("hydra", None)
    for dotted in NOT_THE_JOB:
        *path, last = dotted.split(".")
        node = values
        for part in path:
            node = node.get(part) if isinstance(node, dict) else None
        if isinstance(node, dict):
            node.pop(last, None)
    text = json.dumps(values, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:20]


# -- what a sweep has for each of its jobs ---------------------------------------


@dataclass(frozen=True)
class JobRun:
    run_id: str
    status: str
    reason: str | None
    start_time: int


def runs_by_job(client, experiment_id: str, parent_run_id: str) -> dict[str, list[JobRun]]:
    """The standing child runs of a sweep by job key, newest first. A run
    logged before runs carried their key gets it from its ``config.yaml``."""
    found: dict[str, list[JobRun]] = defaultdict(list)
    for run in sweep_records.standing_children(client, experiment_id, parent_run_id):
        key = run.data.tags.get(sweep_records.TAG_JOB_KEY) or logged_job_key(client, run.info.run_id)
        if key is None:
            continue
        reason = run.data.tags.get("failure_reason")
        found[key].append(JobRun(run.info.run_id, run.info.status, reason, run.info.start_time or 0))
    for runs in found.values():
        runs.sort(key=lambda run: run.start_time, reverse=True)
    return dict(found)


def logged_job_key(client, run_id: str) -> str | None:
    from mnist_runner.tracking.run_history import logged_config

    try:
        config = logged_config(client.tracking_uri, run_id)
    except Exception:  # a run that died before logging its config: it holds nothing to keep
        return None
    return job_key(config)


def plan_jobs(grid: Sequence[tuple[str, list[str]]], by_job: Mapping[str, list[JobRun]]) -> dict[str, dict]:
    """For each job of ``grid`` (its key and overrides): what it does, and the
    run it does it with (see the module's docstring)."""
    plan = {}
    for key, overrides in grid:
        runs = by_job.get(key, [])
        running = [run for run in runs if run.status == "RUNNING"]
        if running:
            raise UserError(
                f"the sweep's job {' '.join(overrides)} is still running (run {running[0].run_id}); "
                "stop that sweep first, or wait until it has ended"
            )
        finished = [run for run in runs if run.status == "FINISHED"]
        killed = [run for run in runs if run.status == "KILLED"]
        if finished:
            step = {"action": DONE, "run_id": finished[0].run_id}
        elif killed:
            step = {"action": RESUME, "run_id": killed[0].run_id}
        elif runs:
            step = {"action": RERUN, "run_id": runs[0].run_id}
        else:
            step = {"action": NEW, "run_id": None}
        plan[key] = {"overrides": list(overrides), **step}
    return plan


def plan_counts(plan: Mapping[str, dict]) -> dict[str, int]:
    counts = {DONE: 0, RESUME: 0, RERUN: 0, NEW: 0}
    for step in plan.values():
        counts[step["action"]] += 1
    return counts


@dataclass(frozen=True)
class JobOutcome:
    overrides: list[str]
    status: str | None  # None: the job has no run
    reason: str | None
    run_id: str | None


def outcomes(plan: Mapping[str, dict], by_job: Mapping[str, list[JobRun]]) -> list[JobOutcome]:
    """How each job of the grid stands now: its newest standing run, a
    FINISHED one first."""
    result = []
    for key, step in plan.items():
        runs = sorted(by_job.get(key, []), key=lambda run: run.status != "FINISHED")
        if runs:
            result.append(JobOutcome(step["overrides"], runs[0].status, runs[0].reason, runs[0].run_id))
        else:
            reason = "the job failed before its run started (its log is in the sweep folder)"
            result.append(JobOutcome(step["overrides"], None, reason, None))
    return result


def continue_command(parent_run_id: str, tracking_uri: str) -> str:
    """The command that continues a sweep, as the user types it."""
    store = "" if tracking_uri == DEFAULT_TRACKING_URI else f" tracking.uri={redact(tracking_uri)}"
    return f"python run.py resume={parent_run_id}{store}"


# -- the continued sweep's command line -----------------------------------------


def split_overrides(overrides: Sequence[str]) -> dict[str, tuple[bool, list[str], str]]:
    """key -> (swept, values, the override as written) of a list of
    overrides; a later one of a key replaces an earlier one."""
    parsed = {}
    for override in OverridesParser.create().parse_overrides(list(overrides)):
        key = override.get_key_element()
        if override.is_discrete_sweep():
            parsed[key] = (True, list(override.sweep_string_iterator()), override.input_line)
        elif override.is_sweep_override():
            raise UserError(f"{override.input_line}: a continued grid sweep takes lists of values (a=1,2), not ranges")
        else:
            parsed[key] = (False, [override.get_value_element_as_str()], override.input_line)
    return parsed


def merged_overrides(recorded: Sequence[str], given: Sequence[str], defaults: DictConfig) -> list[str]:
    """The grid of a continued sweep: the ``recorded`` one with the values
    ``given`` added (see the module's docstring). ``defaults``: the config
    the recorded sweep's jobs share, for keys it did not set. Refuses what
    would make the new runs incomparable with the sweep's."""
    grid = split_overrides(recorded)
    for key, (swept, values, line) in split_overrides(given).items():
        bare = key.lstrip("+~")
        if bare in FREE_KEYS or (key in grid and grid[key][1] == [MASKED]):  # a credential: given again
            grid[key] = (swept, values, line)
            continue
        if key in grid:
            was_swept, had, _ = grid[key]
        else:
            had = [current_value(defaults, bare)]
            was_swept = False
        if not swept and not was_swept and values != had:
            raise UserError(
                f"resume with {line}: the sweep ran every job with {bare}={had[0]}, and a changed fixed "
                "setting would make the new runs incomparable with its runs. Start a new sweep for that, "
                f"or add values to the sweep: {key}={','.join(had + values)}"
            )
        union = had + [value for value in values if value not in had]
        if union != had or key not in grid:
            grid[key] = (len(union) > 1, union, f"{key}={','.join(union)}")
    return [line for _, _, line in grid.values()]


def current_value(config: DictConfig, key: str) -> str:
    """The value of ``key`` as an override would give it: a config group's
    option name, or the value."""
    choices = OmegaConf.select(config, "hydra.runtime.choices", default=None) or {}
    if key in choices:
        return str(choices[key])
    value = OmegaConf.select(config, key, default=None)
    if isinstance(value, DictConfig):
        raise UserError(f"{key} is a config node; give one of its values ({key}.<name>=...)")
    return "null" if value is None else str(value)


def continued_argv(argv: Sequence[str]) -> tuple[list[str], str] | None:
    """The command line of the sweep that ``resume=<parent run id>`` in
    ``argv`` continues, and that run id (``run.py`` runs the command line
    instead, with ``CONTINUES_ENV`` set), or None where ``argv`` continues no sweep: no ``resume=``, or one
    that names a single run (``pipeline.resume`` continues those)."""
    overrides = [arg for arg in argv if not arg.startswith("-")]
    resumes = [o.split("=", 1)[1] for o in overrides if o.split("=", 1)[0] == "resume"]
    if not resumes or resumes[-1] in ("", "null"):
        return None
    run_id = resumes[-1]
    hydra_given = [o for o in overrides if o.lstrip("+~").startswith(("hydra.", "hydra/"))]
    given = [o for o in overrides if o not in hydra_given and o.split("=", 1)[0] != "resume"]
    uris = [o.split("=", 1)[1] for o in given if o.split("=", 1)[0].lstrip("+") == "tracking.uri"]
    uri = uris[-1] if uris else DEFAULT_TRACKING_URI
    sweep = recorded_sweep(uri, run_id)
    if sweep is None:
        return None
    grid, launcher, kind = sweep
    if kind == "search":  # the search's own settings decide; its study refuses other ones
        given_keys = {o.split("=", 1)[0] for o in given}
        merged = [o for o in grid if o.split("=", 1)[0] not in given_keys] + given
    else:
        merged = merged_overrides(grid, given, first_job_config(grid))
    masked = [o.split("=", 1)[0] for o in merged if o.endswith(f"={MASKED}")]
    if masked:
        raise UserError(
            f"resume={run_id}: the sweep ran with {', '.join(masked)}, a credential, which is not recorded; "
            f"give it again: python run.py resume={run_id} {' '.join(f'{key}=...' for key in masked)}"
        )
    flags = [arg for arg in argv if arg.startswith("-") and arg not in ("-m", "--multirun")]
    return ["-m", *flags, *launcher_overrides(launcher, hydra_given), *merged], run_id


def recorded_sweep(uri: str, run_id: str) -> tuple[list[str], list[str], str] | None:
    """The grid and launcher overrides recorded on the parent run ``run_id``,
    and the kind of sweep ("grid" or "search"); None when ``run_id`` is no sweep's parent in the store at ``uri``."""
    from mnist_runner.tracking import store

    try:
        client = store.open_existing(uri, "tracking.uri")
        run = client.get_run(run_id)
    except Exception:  # no store, or no such run: resuming a single run says so, naming resume=
        return None
    tags = run.data.tags
    if tags.get("sweep_role") != "parent":
        return None
    if sweep_records.TAG_OVERRIDES in tags:
        overrides = json.loads(tags[sweep_records.TAG_OVERRIDES])
        launcher = json.loads(tags.get(sweep_records.TAG_LAUNCHER, "[]"))
        return overrides, launcher, tags.get(sweep_records.TAG_KIND, "grid")
    # A sweep recorded before its tags were: its params hold the overrides
    # (the launcher was not recorded: it continues in this process unless given).
    params = run.data.params
    grid = [f"{key[len('sweep.') :]}={value}" for key, value in params.items() if key.startswith("sweep.")]
    grid = [o for o in grid if not o.startswith(("jobs=", "tracking.uri="))]
    return grid, [], "search" if "hparams_search" in {o.split("=", 1)[0] for o in grid} else "grid"


def first_job_config(grid: Sequence[str]) -> DictConfig:
    """The composed config (with Hydra's node: its group choices) of the
    grid's first job: what every job shares for keys the grid does not set."""
    from hydra import compose, initialize_config_dir

    from mnist_runner.config.compose import register
    from mnist_runner.paths import CONFIG_DIR

    register()
    first = [f"{key}={values[0]}" for key, (_, values, _) in split_overrides(grid).items()]
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        return compose(config_name="config", overrides=first, return_hydra_config=True)


def launcher_overrides(recorded: Sequence[str], given: Sequence[str]) -> list[str]:
    """The recorded launcher and sweeper with their settings, then the Hydra
    overrides given now, which replace them (another launcher drops the
    recorded launcher's settings)."""
    given_keys = {o.split("=", 1)[0].lstrip("+~") for o in given}
    for group in ("hydra/launcher", "hydra/sweeper"):
        if group in given_keys:  # another launcher (sweeper): the recorded one's settings do not apply
            recorded = [o for o in recorded if not o.lstrip("+~").startswith((group, group.replace("/", ".") + "."))]
    return [o for o in recorded if o.split("=", 1)[0].lstrip("+~") not in given_keys] + list(given)
