"""optuna-dashboard on the search studies: what ``make dashboard`` runs.

    mnist-dashboard                                        # runs/optuna.db, port 8080
    mnist-dashboard --storage sqlite:////tmp/x/optuna.db --port 8081

Prints the address of each study (its trials, optimisation history, parameter
importances, parallel coordinates), then serves the study database on
127.0.0.1 until Ctrl-C. The dashboard can also rename or delete studies: it
listens on this machine only.
"""

from __future__ import annotations

import argparse
import sys
from socketserver import ThreadingMixIn
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from mnist_runner.errors import UserError
from mnist_runner.paths import RUNS_DIR
from mnist_runner.redaction import redact
from mnist_runner.services.startup import bind_error, port_number
from mnist_runner.tracking.store import sqlite_path

HOST = "127.0.0.1"
DEFAULT_PORT = 8080
# The search sweeper's default storage (hydra.sweeper.storage).
DEFAULT_STORAGE = f"sqlite:///{RUNS_DIR / 'optuna.db'}"


class DashboardError(UserError):
    """The dashboard cannot serve this storage or port; the message names the argument."""


def dashboard_url(port: int, study_id: int | None = None) -> str:
    """The dashboard's study list, or one study's page."""
    base = f"http://{HOST}:{port}/dashboard"
    return base if study_id is None else f"{base}/studies/{study_id}"


def list_studies(storage_url: str) -> list[tuple[int, str, int]]:
    """(id, name, number of trials) of every study in the storage; an error
    when there is none yet (a missing SQLite file is not created)."""
    path = sqlite_path(storage_url)
    if path is not None and not path.is_file():
        raise DashboardError(
            f"--storage {redact(storage_url)}: no search study there yet; run one first, "
            "e.g. `python run.py hparams_search=dense_search`"
        )
    import optuna
    from sqlalchemy.exc import SQLAlchemyError

    try:
        storage = optuna.storages.RDBStorage(storage_url)
        found = [
            (storage.get_study_id_from_name(summary.study_name), summary.study_name, summary.n_trials)
            for summary in optuna.get_all_study_summaries(storage, include_best_trial=False)
        ]
    except (SQLAlchemyError, RuntimeError, ValueError) as error:
        reason = str(error).splitlines()[0]
        raise DashboardError(f"--storage {redact(storage_url)}: not an Optuna study database ({reason})") from error
    if not found:
        raise DashboardError(f"--storage {redact(storage_url)}: the database holds no study yet")
    return found


def check_port_free(port: int) -> None:
    error = bind_error(port, HOST)
    if error is not None:
        raise DashboardError(
            f"--port {port}: cannot listen on {HOST}:{port} ({error.strerror}); "
            "choose another port (make dashboard DASHBOARD_PORT=...)"
        ) from error


class ThreadingServer(ThreadingMixIn, WSGIServer):
    """One thread per request: the page loads its scripts and data in parallel."""

    daemon_threads = True


class QuietHandler(WSGIRequestHandler):
    def log_message(self, format, *args):  # noqa: A002 - the signature of the base class
        pass


def serve(storage_url: str, port: int) -> None:
    """Serve the dashboard on 127.0.0.1 until interrupted."""
    import optuna_dashboard

    server = make_server(
        HOST, port, optuna_dashboard.wsgi(storage_url), server_class=ThreadingServer, handler_class=QuietHandler
    )
    with server:
        server.serve_forever()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="mnist-dashboard", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--storage", default=DEFAULT_STORAGE, help="the study database (default: the search's, runs/optuna.db)"
    )
    parser.add_argument("--port", type=port_number, default=DEFAULT_PORT, help="port on 127.0.0.1 (default: 8080)")
    args = parser.parse_args(argv)
    try:
        check_port_free(args.port)
        studies = list_studies(args.storage)
    except DashboardError as error:
        print(f"error: {error}", file=sys.stderr)
        return error.exit_code
    print(f"optuna-dashboard on {redact(args.storage)}: {dashboard_url(args.port)}")
    for study_id, name, trials in studies:
        print(f"  study {name!r} ({trials} trials): {dashboard_url(args.port, study_id)}")
    print("Ctrl-C stops it.", flush=True)
    try:
        serve(args.storage, args.port)
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
