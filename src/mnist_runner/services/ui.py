"""The MLflow UI on a tracking store: what ``make ui`` runs.

    mnist-ui                                   # the project's store, port 5000
    mnist-ui --uri sqlite:////tmp/x/mlflow.db --port 5001

Prints the address of the experiment's runs with their per-epoch charts, then
serves the store with ``mlflow server`` on 127.0.0.1 until Ctrl-C.
"""

from __future__ import annotations

import argparse
import os
import sys

from mnist_runner.config.schema import DEFAULT_EXPERIMENT
from mnist_runner.errors import UserError
from mnist_runner.paths import DEFAULT_TRACKING_URI
from mnist_runner.redaction import redact
from mnist_runner.services.startup import bind_error, port_number
from mnist_runner.tracking import store
from mnist_runner.tracking.links import UI_HOST as HOST
from mnist_runner.tracking.links import UI_PORT as DEFAULT_PORT
from mnist_runner.tracking.links import base_url, chart_url
from mnist_runner.tracking.store import sqlite_path

# Database stores that `mlflow server --backend-store-uri` accepts; a driver may
# follow the dialect, e.g. postgresql+psycopg2://.
DATABASE_SCHEMES = ("sqlite", "postgresql", "mysql", "mssql")


class UIError(UserError):
    """The UI cannot serve this store or port; the message names the argument."""


def shown(uri: str) -> str:
    """``uri`` with any password masked, for messages."""
    return redact(uri)


def check_store_uri(uri: str) -> None:
    """Refuse what ``mlflow server`` cannot serve as a backend store, saying what it can."""
    scheme = uri.partition("://")[0].partition("+")[0] if "://" in uri else ""
    if scheme in DATABASE_SCHEMES:
        return
    allowed = "a database store such as sqlite:////absolute/path/mlflow.db or postgresql+psycopg2://user@host:port/db"
    if scheme in ("http", "https"):
        raise UIError(
            f"--uri {shown(uri)}: that is a tracking server, which serves its own UI at that address; "
            f"this command serves {allowed}"
        )
    raise UIError(f"--uri {shown(uri)}: not a database store URI; expected {allowed}")


def experiment_id(uri: str, name: str) -> str | None:
    """The id of experiment ``name`` in the store, or None if it does not exist
    yet. A new SQLite store is created here, as a run would create it, rather
    than by the server; opening the store closes runs whose process died."""
    try:
        path = sqlite_path(uri)
        if path is not None:
            store.ensure_sqlite_store(path, "--uri")
        found = store.open_existing(uri, "--uri").get_experiment_by_name(name)
    except UserError as error:
        raise UIError(str(error).replace(f"--uri={uri}", f"--uri {shown(uri)}")) from error
    return found.experiment_id if found is not None else None


def check_port_free(port: int, host: str = HOST) -> None:
    """Fail before the server's slow start when something already listens on the port."""
    error = bind_error(port, host)
    if error is not None:
        raise UIError(
            f"--port {port}: cannot listen on {host}:{port} ({error.strerror}); choose another port (make ui PORT=...)"
        ) from error


def server_command(uri: str, port: int, host: str = HOST) -> list[str]:
    # This interpreter's MLflow, whatever is on PATH. One worker: uvicorn's default
    # four are each a full copy of the MLflow app (~250 MB and a slower start).
    return [
        sys.executable,
        "-m",
        "mlflow",
        "server",
        "--backend-store-uri",
        uri,
        "--host",
        host,
        "--port",
        str(port),
        "--workers",
        "1",
        # Quiet: uvicorn would print its bare address, which opens MLflow's
        # overview page, after the chart address printed above.
        "--uvicorn-opts",
        "--log-level warning",
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="mnist-ui", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--uri", default=DEFAULT_TRACKING_URI, help="tracking store (default: the project's)")
    parser.add_argument("--experiment", default=DEFAULT_EXPERIMENT, help="experiment to open (default: mnist)")
    parser.add_argument("--port", type=port_number, default=DEFAULT_PORT, help="port on 127.0.0.1 (default: 5000)")
    args = parser.parse_args(argv)
    try:
        check_store_uri(args.uri)
        check_port_free(args.port)
        found = experiment_id(args.uri, args.experiment)
    except UIError as error:
        print(f"error: {error}", file=sys.stderr)
        return error.exit_code
    if found is None:
        print(f"MLflow UI: {base_url(args.port)}  (experiment {args.experiment!r} appears after its first run)")
    else:
        print(f"MLflow UI, runs of {args.experiment!r} with per-epoch charts: {chart_url(found, args.port)}")
    print("Ctrl-C stops it.", flush=True)
    command = server_command(args.uri, args.port)
    # MLflow's job runner (GenAI evaluation jobs) starts about seven extra Python
    # processes that browsing training runs never uses; the user can still turn it on.
    env = {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false", **os.environ}
    # Replace this process: Ctrl-C and kill then reach the server directly.
    os.execve(command[0], command, env)
    return 0  # not reached: execve does not return


if __name__ == "__main__":
    sys.exit(main())
