"""The runs of a sweep or an experiment, from MLflow, made into the gap
report's files (``tables`` makes the tables, ``rendering`` the text and
``gap_figures`` the figures):
``gap_report.md`` (per configuration, the effect of each setting, per run),
``gap_report.csv`` (per run), ``gap_summary.csv`` (per configuration),
``gap_effects.csv`` (per setting), ``gap_effect_pairs.csv`` (the tests behind
it) and three PNG figures."""

from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd

from mnist_runner.sweeps import gap_figures, links, rendering, tables
from mnist_runner.tracking import sweep_records

log = logging.getLogger(__name__)


def search_children(client, experiment_id: str, parent_run_id: str | None) -> pd.DataFrame:
    """Runs of the experiment as a DataFrame: a sweep's child runs, or every
    run that is not a sweep's parent; a FAILED run that a later run of the
    same job replaced (``continuation``) is left out."""
    import mlflow

    mlflow.set_tracking_uri(client.tracking_uri)
    query = f"tags.mlflow.parentRunId = '{parent_run_id}'" if parent_run_id else ""
    runs = mlflow.search_runs(experiment_ids=[experiment_id], filter_string=query, max_results=50_000)
    if parent_run_id is None and "tags.sweep_role" in runs:
        runs = runs[runs["tags.sweep_role"] != "parent"]
    supersedes = f"tags.{sweep_records.TAG_SUPERSEDES}"
    if supersedes in runs:
        runs = runs[~runs["run_id"].isin(set(runs[supersedes].dropna()))]
    return runs.reset_index(drop=True)


def metric_series(client, run_id: str, name: str) -> pd.Series:
    history = client.get_metric_history(run_id, name)
    return pd.Series([m.value for m in history], index=[m.step for m in history], name=run_id).sort_index()


def build_report(
    client, experiment_id: str, out_dir: Path, parent_run_id: str | None = None, swept: list[str] | None = None
) -> pd.DataFrame:
    """Tables and figures of a sweep (``parent_run_id``) or experiment, written
    to ``out_dir``; the per-configuration table and, for a sweep, where to see
    its runs in the MLflow UI are logged. Returns the per-run table."""
    runs = search_children(client, experiment_id, parent_run_id)
    if runs.empty:
        raise LookupError("no runs to compare")
    table = tables.gap_table(runs, swept)
    summary = tables.summary_table(table)
    pairs = tables.effect_pairs(table)
    effects = tables.effects_table(table, pairs)
    gaps = {run_id: metric_series(client, run_id, "overfit_gap") for run_id in table["run_id"]}
    out_dir.mkdir(parents=True, exist_ok=True)
    table.to_csv(out_dir / "gap_report.csv", index=False)
    summary.to_csv(out_dir / "gap_summary.csv", index=False)
    effects.to_csv(out_dir / "gap_effects.csv", index=False)
    pairs.to_csv(out_dir / "gap_effect_pairs.csv", index=False)
    markdown = rendering.report_markdown(summary, table, effects)
    hint = None
    if parent_run_id is not None:
        uri = client.tracking_uri
        saved = save_sweep_view(client, experiment_id, parent_run_id, len(table))
        markdown += "\n\n" + links.report_links(uri, experiment_id, parent_run_id, list(table["run_id"]), saved)
        parent_name = client.get_run(parent_run_id).info.run_name
        hint = links.sweep_hint(uri, experiment_id, parent_run_id, parent_name, saved)
    (out_dir / "gap_report.md").write_text(markdown + "\n")
    for name, figure in gap_figures.figures(table, gaps, summary).items():
        figure.savefig(out_dir / f"{name}.png", dpi=100)
    log.info(
        "overfitting-gap report (%s; %s; largest mean final gap first):\n%s\n"
        "per run, every statistic and the plots: %s",
        run_counts(table),
        count(len(summary), "configuration"),
        rendering.terminal_table(summary),
        out_dir,
    )
    if not effects.empty:
        log.info("the effect of each setting on the final gap:\n%s", rendering.effects_terminal_table(effects))
    if hint:
        log.info("%s", hint)
    return table


def save_sweep_view(client, experiment_id: str, parent_run_id: str, runs: int) -> bool:
    """Store the view of the sweep's ``runs`` child runs in the experiment,
    where the link printed at the sweep's end opens it. False, with a
    warning, where the store refuses: the link then searches for the runs
    instead."""
    from mlflow.exceptions import MlflowException

    tag = links.sweep_view_tag(parent_run_id)
    try:
        client.set_experiment_tag(experiment_id, tag, links.sweep_view_value(parent_run_id, runs))
    except MlflowException as error:
        log.warning("could not save the sweep's view in the MLflow UI (experiment tag %s): %s", tag, error)
        return False
    return True


def run_counts(table: pd.DataFrame) -> str:
    """``6 runs`` when all finished, else ``6 runs: 4 finished, 1 failed, 1 interrupted``."""
    statuses = table["status"].value_counts()
    finished = int(statuses.get("FINISHED", 0))
    if finished == len(table):
        return count(len(table), "run")
    parts = [f"{finished} finished"]
    for status, word in (("FAILED", "failed"), ("KILLED", "interrupted"), ("RUNNING", "running")):
        if statuses.get(status, 0):
            parts.append(f"{int(statuses[status])} {word}")
    return f"{count(len(table), 'run')}: {', '.join(parts)}"


def count(number: int, noun: str) -> str:
    return f"{number} {noun}" + ("" if number == 1 else "s")


def find_sweep_parent(client, experiment_id: str, sweep: str):
    """The parent run of ``sweep`` (a sweep id, or ``latest``)."""
    query = "tags.sweep_role = 'parent'" + ("" if sweep == "latest" else f" and tags.sweep_id = '{sweep}'")
    found = client.search_runs([experiment_id], query, order_by=["attributes.start_time DESC"], max_results=1)
    if not found:
        raise LookupError(f"no sweep {sweep!r} in this experiment")
    return found[0]
