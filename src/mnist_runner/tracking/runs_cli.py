"""Runs from the terminal: list the recent runs of an experiment, delete runs.

    mnist-runs list                          # the 20 latest runs of experiment 'mnist'
    mnist-runs list --experiment digits --limit 50
    mnist-runs sweeps --experiment digits    # each sweep: its jobs finished, interrupted, failed, to run
    mnist-runs delete 3f2c... 9a1b...        # asks first; --yes does not
    mnist-runs delete 3f2c... --purge --yes  # also the artifacts, for good

``delete`` moves runs to MLflow's trash (the UI hides them; ``mlflow runs
restore`` brings one back); ``--purge`` then removes them and their
artifacts for good (MLflow's ``gc``). A run whose process is still training
is not deleted. ``sweeps`` shows how far each sweep got; a sweep that has
jobs left continues with ``python run.py resume=<its run id>``. ``--uri``
goes before or after the command.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from typing import Sequence

from mnist_runner.config.schema import DEFAULT_EXPERIMENT
from mnist_runner.errors import EXIT_USAGE, UserError
from mnist_runner.paths import DEFAULT_TRACKING_URI
from mnist_runner.redaction import redact
from mnist_runner.tracking import liveness, store, sweep_records

# param or metric -> column, in the order shown; what says what a run was and how it did.
COLUMNS = {
    "params.model.name": "model",
    "params.data.train_samples": "samples",
    "params.trainer.epochs": "epochs",
    "params.model.dropout": "dropout",
    "params.trainer.seed": "seed",
    "metrics.test_accuracy": "test_acc",
    "metrics.final_overfit_gap": "gap",
}


def runs_table(client, experiment: str, limit: int):
    """The latest ``limit`` runs of ``experiment``, one row each, newest first."""
    import mlflow
    import pandas as pd

    found = experiment_named(client, experiment)
    runs = mlflow.search_runs([found.experiment_id], max_results=limit, order_by=["attributes.start_time DESC"])
    table = pd.DataFrame(index=runs.index)
    if runs.empty:
        return table
    table["run_id"] = runs["run_id"]
    table["name"] = runs.get("tags.mlflow.runName", "")
    table["status"] = runs["status"]
    table["started"] = pd.to_datetime(runs["start_time"]).dt.strftime("%m-%d %H:%M")
    for column, name in COLUMNS.items():
        table[name] = runs[column] if column in runs else None
    samples = table["samples"].where(table["samples"].notna() & (table["samples"] != "None"), "all")
    table["samples"] = samples
    return table


def sweeps_table(client, experiment: str, limit: int):
    """The latest ``limit`` sweeps of ``experiment``, newest first: the
    parent run, its status, and how its jobs stand (``sweep_records``)."""
    import pandas as pd

    found = experiment_named(client, experiment)
    parents = client.search_runs(
        [found.experiment_id],
        "tags.sweep_role = 'parent'",
        order_by=["attributes.start_time DESC"],
        max_results=limit,
    )
    rows = []
    for parent in parents:
        children = sweep_records.standing_children(client, found.experiment_id, parent.info.run_id)
        counts = sweep_records.job_counts(parent, children)
        rows.append(
            {
                "run_id": parent.info.run_id,
                "sweep": parent.data.tags.get("sweep_id", ""),
                "status": parent.info.status,
                "started": pd.Timestamp(parent.info.start_time, unit="ms").strftime("%m-%d %H:%M"),
                **{name: counts[name] for name in ("jobs", "finished", "interrupted", "failed", "to_run")},
            }
        )
    return pd.DataFrame(rows)


def experiment_named(client, experiment: str):
    found = client.get_experiment_by_name(experiment)
    if found is None:
        known = ", ".join(e.name for e in client.search_experiments()) or "none yet"
        raise UserError(f"--experiment {experiment}: no such experiment (known: {known})")
    return found


def show_sweeps(table) -> str:
    """The sweeps table as text; full run ids (``resume=`` takes them)."""
    return "no sweeps" if table.empty else table.to_string(index=False)


def show(table) -> str:
    """The table as text that fits 100 columns: run ids cut to 8 characters
    (enough to tell runs apart; ``mlflow runs describe`` takes the whole
    one) and run names to 14."""
    if table.empty:
        return "no runs"
    shown = table.copy()
    shown["run_id"] = shown["run_id"].str[:8]
    shown["name"] = shown["name"].fillna("").str[:14]
    return shown.to_string(
        index=False,
        na_rep="",
        formatters={
            "test_acc": lambda v: "" if v != v else f"{v:.4f}",
            "gap": lambda v: "" if v != v else f"{v:+.4f}",
        },
    )


def delete(client, uri: str, run_ids: Sequence[str], purge: bool) -> list[str]:
    """Move runs to MLflow's trash (and with ``purge`` remove them and their
    artifacts for good); a run still training is refused. The runs deleted."""
    runs = []
    for run_id in run_ids:
        try:
            run = client.get_run(run_id)
        except Exception as error:
            raise UserError(f"{run_id}: no such run in {redact(uri)}") from error
        if run.info.status == "RUNNING" and still_training(run.data.tags):
            raise UserError(f"{run_id}: the run is still training; stop it first (Ctrl-C)")
        runs.append(run)
    for run in runs:
        if run.info.lifecycle_stage != "deleted":
            client.delete_run(run.info.run_id)
    if purge:
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "mlflow",
                "gc",
                "--backend-store-uri",
                uri,
                "--run-ids",
                ",".join(r.info.run_id for r in runs),
            ],
            capture_output=True,
            text=True,
        )
        if done.returncode != 0:
            raise UserError(
                f"purging failed: {done.stderr.strip().splitlines()[-1] if done.stderr else done.returncode}"
            )
    return [run.info.run_id for run in runs]


def still_training(tags: dict[str, str]) -> bool:
    """Whether a RUNNING run's process may still be at work (see ``liveness``)."""
    if liveness.TAG_PID not in tags:
        return False  # logged by something else, or before liveness was recorded
    return liveness.death_of(tags) is None


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="mnist-runs", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--uri", default=DEFAULT_TRACKING_URI, help="the MLflow tracking store (default: the project's)"
    )
    # --uri after the command too (mnist-runs list --uri ...); given there, it wins.
    store_option = argparse.ArgumentParser(add_help=False)
    store_option.add_argument("--uri", default=argparse.SUPPRESS, help="the MLflow tracking store")
    commands = parser.add_subparsers(dest="command", required=True)
    listing = commands.add_parser("list", help="the latest runs of an experiment", parents=[store_option])
    listing.add_argument("--experiment", default=DEFAULT_EXPERIMENT, help="default: %(default)s")
    listing.add_argument("--limit", type=int, default=20, help="how many runs (default: %(default)s)")
    sweeps = commands.add_parser(
        "sweeps", help="the latest sweeps: jobs finished, interrupted, failed, to run", parents=[store_option]
    )
    sweeps.add_argument("--experiment", default=DEFAULT_EXPERIMENT, help="default: %(default)s")
    sweeps.add_argument("--limit", type=int, default=20, help="how many sweeps (default: %(default)s)")
    deleting = commands.add_parser("delete", help="delete runs", parents=[store_option])
    deleting.add_argument("run_ids", nargs="+", metavar="RUN_ID")
    deleting.add_argument("--purge", action="store_true", help="remove them and their artifacts for good")
    deleting.add_argument("--yes", action="store_true", help="do not ask")
    args = parser.parse_args(argv)
    try:
        client = store.open_existing(args.uri)
        if args.command == "list":
            print(show(runs_table(client, args.experiment, args.limit)))
            return 0
        if args.command == "sweeps":
            print(show_sweeps(sweeps_table(client, args.experiment, args.limit)))
            return 0
        if not args.yes:
            if not sys.stdin.isatty():
                raise UserError("delete: give --yes to delete without being asked")
            answer = input(f"delete {len(args.run_ids)} run(s){' for good' if args.purge else ''}? [y/N] ")
            if answer.strip().lower() not in ("y", "yes"):
                print("nothing deleted")
                return 0
        deleted = delete(client, args.uri, args.run_ids, args.purge)
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return error.exit_code if error.exit_code else EXIT_USAGE
    how = "deleted for good" if args.purge else "moved to the trash (mlflow runs restore --run-id ID brings one back)"
    print(f"{len(deleted)} run(s) {how}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
