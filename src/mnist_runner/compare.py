"""The overfitting-gap report on demand, for a sweep or a whole experiment.

    python -m mnist_runner.compare                      # the latest sweep
    python -m mnist_runner.compare --sweep 20261125-154501-a1b2c3
    python -m mnist_runner.compare --experiment mnist   # every run of the experiment

Prints the table, writes CSV, Markdown and plots to ``--out`` (default
``runs/reports/<sweep or experiment>``), and for a sweep also logs them to
its parent run.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

import pandas as pd

from mnist_runner import report
from mnist_runner.paths import DEFAULT_TRACKING_URI, RUNS_DIR

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


def build_report(client, experiment_id: str, out_dir: Path, parent_run_id: str | None = None,
                 swept: list[str] | None = None) -> pd.DataFrame:
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
    log.info("overfitting-gap report (%d runs, sorted by %s, largest first):\n%s\nwritten to %s",
             len(table), report.SORT_KEY, shown, out_dir)
    return table


def find_sweep_parent(client, experiment_id: str, sweep: str):
    """The parent run of ``sweep`` (a sweep id, or ``latest``)."""
    query = "tags.sweep_role = 'parent'" + ("" if sweep == "latest" else f" and tags.sweep_id = '{sweep}'")
    found = client.search_runs([experiment_id], query, order_by=["attributes.start_time DESC"], max_results=1)
    if not found:
        raise LookupError(f"no sweep {sweep!r} in this experiment")
    return found[0]


def main(argv=None) -> int:
    import mlflow

    parser = argparse.ArgumentParser(prog="python -m mnist_runner.compare", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--experiment", default="mnist", help="MLflow experiment name (default: mnist)")
    scope = parser.add_mutually_exclusive_group()
    scope.add_argument("--sweep", default=None, help="a sweep id, or 'latest' (the default without --all)")
    scope.add_argument("--all", action="store_true", help="compare every run of the experiment, not one sweep")
    parser.add_argument("--uri", default=DEFAULT_TRACKING_URI, help="tracking URI (default: the project's store)")
    parser.add_argument("--out", type=Path, default=None, help="output folder (default: runs/reports/<name>)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    client = mlflow.MlflowClient(tracking_uri=args.uri)
    experiment = client.get_experiment_by_name(args.experiment)
    if experiment is None:
        print(f"--experiment {args.experiment}: no such experiment in {args.uri}", file=sys.stderr)
        return 2
    try:
        if args.all:
            out = args.out or RUNS_DIR / "reports" / args.experiment
            build_report(client, experiment.experiment_id, out)
            return 0
        parent = find_sweep_parent(client, experiment.experiment_id, args.sweep or "latest")
        sweep_id = parent.data.tags["sweep_id"]
        out = args.out or RUNS_DIR / "reports" / sweep_id
        swept = json.loads(parent.data.tags.get("sweep_keys", "null"))
        build_report(client, experiment.experiment_id, out, parent_run_id=parent.info.run_id, swept=swept)
        client.log_artifacts(parent.info.run_id, str(out), "report")
    except LookupError as error:
        print(f"{args.experiment}: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
