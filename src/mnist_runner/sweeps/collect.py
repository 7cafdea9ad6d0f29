"""The runs of a sweep or an experiment, from MLflow, made into the gap
report's files (``report`` draws them)."""

from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd

from mnist_runner.sweeps import report

log = logging.getLogger(__name__)


def search_children(client, experiment_id: str, parent_run_id: str | None) -> pd.DataFrame:
    """Runs of the experiment as a DataFrame: a sweep's child runs, or every
    run that is not a sweep's parent."""
    import mlflow

    mlflow.set_tracking_uri(client.tracking_uri)
    query = f"tags.mlflow.parentRunId = '{parent_run_id}'" if parent_run_id else ""
    runs = mlflow.search_runs(experiment_ids=[experiment_id], filter_string=query, max_results=50_000)
    if parent_run_id is None and "tags.sweep_role" in runs:
        runs = runs[runs["tags.sweep_role"] != "parent"]
    return runs.reset_index(drop=True)


def metric_series(client, run_id: str, name: str) -> pd.Series:
    history = client.get_metric_history(run_id, name)
    return pd.Series([m.value for m in history], index=[m.step for m in history], name=run_id).sort_index()


def build_report(
    client, experiment_id: str, out_dir: Path, parent_run_id: str | None = None, swept: list[str] | None = None
) -> pd.DataFrame:
    """Table and figures of a sweep (``parent_run_id``) or experiment, written to ``out_dir``."""
    runs = search_children(client, experiment_id, parent_run_id)
    if runs.empty:
        raise LookupError("no runs to compare")
    table = report.gap_table(runs, swept)
    gaps = {run_id: metric_series(client, run_id, "overfit_gap") for run_id in table["run_id"]}
    out_dir.mkdir(parents=True, exist_ok=True)
    table.to_csv(out_dir / "gap_report.csv", index=False)
    (out_dir / "gap_report.md").write_text(report.to_markdown(table) + "\n")
    for name, figure in report.figures(table, gaps).items():
        figure.savefig(out_dir / f"{name}.png", dpi=100)
    shown = table.drop(columns=["run_id", "failure"]).to_string(
        index=False, float_format="{:.4f}".format, formatters={"duration_s": "{:.1f}".format}
    )
    log.info(
        "overfitting-gap report (%d runs, sorted by %s, largest first):\n%s\nwritten to %s",
        len(table),
        report.SORT_KEY,
        shown,
        out_dir,
    )
    return table


def find_sweep_parent(client, experiment_id: str, sweep: str):
    """The parent run of ``sweep`` (a sweep id, or ``latest``)."""
    query = "tags.sweep_role = 'parent'" + ("" if sweep == "latest" else f" and tags.sweep_id = '{sweep}'")
    found = client.search_runs([experiment_id], query, order_by=["attributes.start_time DESC"], max_results=1)
    if not found:
        raise LookupError(f"no sweep {sweep!r} in this experiment")
    return found[0]
