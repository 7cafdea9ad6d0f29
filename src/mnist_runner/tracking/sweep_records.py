"""What a sweep's runs record about the sweep, read back: the tags that tie a
child run to its job, and the child runs that stand (those that no later run
of the same job replaced). ``sweeps.continuation`` writes these tags;
``mnist-runs sweeps`` and the gap report read them."""

from __future__ import annotations

from collections import Counter

TAG_KIND = "sweep_kind"  # on the parent: "grid" (Hydra's sweeper) or "search" (Optuna picks the values)
TAG_OVERRIDES = "sweep_overrides"  # on the parent, JSON list: the grid's overrides
TAG_LAUNCHER = "sweep_launcher"  # on the parent, JSON list: the launcher's and sweeper's overrides
TAG_JOBS = "sweep_jobs"  # on the parent: how many jobs the grid has
TAG_JOB_KEY = "sweep_job_key"  # on each child run: its job's key
TAG_SUPERSEDES = "sweep_supersedes"  # on a child run: the FAILED run of the same job it replaces
TAG_SUPERSEDED = "sweep_superseded"  # on that FAILED run


def standing_children(client, experiment_id: str, parent_run_id: str) -> list:
    """The parent's child runs that stand: those no later run superseded."""
    runs = client.search_runs([experiment_id], f"tags.mlflow.parentRunId = '{parent_run_id}'", max_results=50_000)
    superseded = {run.data.tags.get(TAG_SUPERSEDES) for run in runs}
    return [run for run in runs if run.info.run_id not in superseded]


def job_counts(parent, children: list) -> dict[str, int]:
    """How the jobs of a sweep stand: ``finished``, ``interrupted`` (KILLED),
    ``failed``, ``running`` and ``to_run`` (no run yet). A job's best run
    counts (FINISHED over RUNNING over KILLED over FAILED); a run without a
    job key is a job of its own."""
    rank = {"FINISHED": 0, "RUNNING": 1, "KILLED": 2, "FAILED": 3}
    best: dict[str, str] = {}
    for run in children:
        key = run.data.tags.get(TAG_JOB_KEY) or run.info.run_id
        status = run.info.status
        if key not in best or rank.get(status, 9) < rank.get(best[key], 9):
            best[key] = status
    statuses = Counter(best.values())
    planned = parent.data.tags.get(TAG_JOBS) or parent.data.params.get("sweep.jobs") or len(best)
    return {
        "jobs": int(planned),
        "finished": statuses["FINISHED"],
        "interrupted": statuses["KILLED"],
        "failed": statuses["FAILED"],
        "running": statuses["RUNNING"],
        "to_run": max(0, int(planned) - len(best)),
    }
