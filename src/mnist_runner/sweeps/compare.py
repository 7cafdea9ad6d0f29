"""The overfitting-gap report on demand, for a sweep or a whole experiment.

    mnist-compare                                   # the latest sweep
    mnist-compare --sweep 20261125-154501-a1b2c3
    mnist-compare --all --experiment mnist          # every run of the experiment

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

from mnist_runner.config.schema import DEFAULT_EXPERIMENT
from mnist_runner.errors import EXIT_USAGE, UserError
from mnist_runner.paths import DEFAULT_TRACKING_URI, RUNS_DIR
from mnist_runner.redaction import redact
from mnist_runner.sweeps.collect import build_report, find_sweep_parent
from mnist_runner.tracking import store


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="mnist-compare", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--experiment", default=DEFAULT_EXPERIMENT, help="MLflow experiment name (default: %(default)s)"
    )
    scope = parser.add_mutually_exclusive_group()
    scope.add_argument("--sweep", default=None, help="a sweep id, or 'latest' (the default without --all)")
    scope.add_argument("--all", action="store_true", help="compare every run of the experiment, not one sweep")
    parser.add_argument("--uri", default=DEFAULT_TRACKING_URI, help="tracking URI (default: the project's store)")
    parser.add_argument("--out", type=Path, default=None, help="output folder (default: runs/reports/<name>)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    try:
        client = store.open_existing(args.uri)
        experiment = client.get_experiment_by_name(args.experiment)
        if experiment is None:
            raise UserError(f"--experiment {args.experiment}: no such experiment in {redact(args.uri)}")
        if args.all:
            out = args.out or RUNS_DIR / "reports" / args.experiment
            build_report(client, experiment.experiment_id, out)
            return 0
        found = find_sweep_parent(client, experiment.experiment_id, args.sweep or "latest")
        sweep_id = found.data.tags["sweep_id"]
        out = args.out or RUNS_DIR / "reports" / sweep_id
        swept = json.loads(found.data.tags.get("sweep_keys", "null"))
        build_report(client, experiment.experiment_id, out, parent_run_id=found.info.run_id, swept=swept)
        client.log_artifacts(found.info.run_id, str(out), "report")
    except LookupError as error:
        print(f"{args.experiment}: {error}", file=sys.stderr)
        return EXIT_USAGE
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return error.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(main())
