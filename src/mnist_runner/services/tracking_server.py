"""A shared MLflow tracking server on PostgreSQL, started on 127.0.0.1.

``python -m mnist_runner.services.tracking_server start|stop|status`` keeps
everything under one folder (``runs/server`` by default)::

    postgres/      the PostgreSQL cluster (data, its unix socket, postgres.log)
    pgpass         the database password, in libpq's format, mode 0600
    artifacts/     run artifacts, served by MLflow (``mlflow-artifacts:``)
    mlflow.log     the MLflow server's log
    mlflow.pid     the MLflow server's process id (its own session)
    server.json    the ports of the last start, for ``status`` and ``stop``

Runs log to it with ``tracking.uri=http://127.0.0.1:<port>``. The PostgreSQL
cluster is ``postgres``'s job; this module runs MLflow on it.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from mnist_runner.paths import RUNS_DIR
from mnist_runner.services.postgres import (
    DB_NAME,
    DB_USER,
    ServerError,
    ensure_database,
    init_cluster,
    postgres_running,
    require_free_port,
    start_postgres,
    stop_postgres,
)
from mnist_runner.services.startup import log_tail
from mnist_runner.tracking.store import health_status

DEFAULT_DIR = RUNS_DIR / "server"
DEFAULT_PORT = 5001  # 5000 is `make ui`
DEFAULT_DB_PORT = 5433  # 5432 is a system PostgreSQL's
DEFAULT_WORKERS = 2


@dataclass(frozen=True)
class ServerLayout:
    """Where a tracking server keeps its files, and the ports it listens on."""

    root: Path
    port: int = DEFAULT_PORT
    db_port: int = DEFAULT_DB_PORT

    @property
    def data_dir(self) -> Path:
        return self.root / "postgres"

    @property
    def pg_log(self) -> Path:
        return self.data_dir / "postgres.log"

    @property
    def pgpass(self) -> Path:
        return self.root / "pgpass"

    @property
    def artifacts(self) -> Path:
        return self.root / "artifacts"

    @property
    def mlflow_log(self) -> Path:
        return self.root / "mlflow.log"

    @property
    def pid_file(self) -> Path:
        return self.root / "mlflow.pid"

    @property
    def state_file(self) -> Path:
        return self.root / "server.json"

    @property
    def tracking_uri(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def backend_uri(self) -> str:
        # No password here: it would show in `ps`. libpq reads it from PGPASSFILE.
        return f"postgresql+psycopg2://{DB_USER}@127.0.0.1:{self.db_port}/{DB_NAME}"


def layout(root: Path | str = DEFAULT_DIR, port: int | None = None, db_port: int | None = None) -> ServerLayout:
    """The layout under ``root``; ports not given are those of the last start, else the defaults."""
    root = Path(root).resolve()
    saved = _saved_ports(root)
    return ServerLayout(
        root,
        port if port is not None else saved.get("port", DEFAULT_PORT),
        db_port if db_port is not None else saved.get("db_port", DEFAULT_DB_PORT),
    )


def _saved_ports(root: Path) -> dict[str, int]:
    try:
        return json.loads((root / "server.json").read_text())
    except (OSError, ValueError):
        return {}


# ---------------------------------------------------------------- MLflow


def mlflow_pid(paths: ServerLayout) -> int | None:
    """The MLflow server's pid from the PID file, if that process is alive and is
    an MLflow server (a stale file, or a reused pid, gives None)."""
    try:
        pid = int(paths.pid_file.read_text().strip())
        command = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, ValueError):
        return None
    return pid if state != "Z" and b"mlflow" in command and b"server" in command else None


def healthy(uri: str, timeout: float = 2.0) -> bool:
    try:
        return health_status(uri, timeout) == 200
    except (OSError, ValueError):
        return False


def start_mlflow(paths: ServerLayout, workers: int = DEFAULT_WORKERS, timeout: float = 180.0) -> int:
    """Start ``mlflow server`` on the cluster in the background (its own session)
    and wait until it is healthy; returns its pid."""
    require_free_port(paths.port, "--port")
    paths.artifacts.mkdir(parents=True, exist_ok=True)
    command = [
        sys.executable,
        "-m",
        "mlflow",
        "server",
        "--backend-store-uri",
        paths.backend_uri,
        "--artifacts-destination",
        str(paths.artifacts),
        "--host",
        "127.0.0.1",
        "--port",
        str(paths.port),
        "--workers",
        str(workers),
    ]
    env = {**os.environ, "PGPASSFILE": str(paths.pgpass)}
    # MLflow's GenAI job runner (seven queue consumers) serves no training run:
    # off unless asked for, to spare memory and start-up time.
    env.setdefault("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "false")
    with paths.mlflow_log.open("ab") as log:
        log.write(f"\n--- {time.strftime('%Y-%m-%d %H:%M:%S')} {shlex.join(command)}\n".encode())
        log.flush()
        process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=paths.root,
            start_new_session=True,
        )
    paths.pid_file.write_text(f"{process.pid}\n")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        # Check the process before the port: a server that dies at start leaves
        # nothing listening, or leaves the port to another server.
        if process.poll() is not None:
            paths.pid_file.unlink(missing_ok=True)
            raise ServerError(
                f"the MLflow server exited at start (code {process.returncode}); {log_tail(paths.mlflow_log, 30)}"
            )
        if healthy(paths.tracking_uri):
            return process.pid
        time.sleep(0.5)
    _stop_process_group(process.pid)
    paths.pid_file.unlink(missing_ok=True)
    raise ServerError(f"the MLflow server was not healthy after {timeout:.0f} s; {log_tail(paths.mlflow_log, 30)}")


def _stop_process_group(pid: int, grace: float = 20.0) -> None:
    """SIGTERM the server's session (uvicorn and its workers), SIGKILL what is left."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline:
            try:
                os.killpg(pid, 0)
            except ProcessLookupError:
                return
            _reap(pid)
            time.sleep(0.2)


def _reap(pid: int) -> None:
    """Collect the leader's exit status when this process started it (no zombie)."""
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


def stop_mlflow(paths: ServerLayout) -> bool:
    pid = mlflow_pid(paths)
    paths.pid_file.unlink(missing_ok=True)
    if pid is None:
        return False
    _stop_process_group(pid)
    return True


# ---------------------------------------------------------------- commands


def start(paths: ServerLayout, workers: int = DEFAULT_WORKERS) -> str:
    """Start what is not running (PostgreSQL, then MLflow) and return the tracking URI."""
    if mlflow_pid(paths) is not None:
        saved = _saved_ports(paths.root)
        if (saved.get("port"), saved.get("db_port")) != (paths.port, paths.db_port):
            raise ServerError(
                f"the server in {paths.root} already runs with --port {saved.get('port')} "
                f"--db-port {saved.get('db_port')}; stop it first to change the ports"
            )
        if postgres_running(paths):
            print(f"already running: {status_text(paths)}")
            return paths.tracking_uri
    paths.root.mkdir(parents=True, exist_ok=True)
    if init_cluster(paths):
        print(f"created a PostgreSQL cluster in {paths.data_dir}")
    if not postgres_running(paths):
        start_postgres(paths)
    ensure_database(paths)
    if mlflow_pid(paths) is None:
        paths.state_file.write_text(json.dumps({"port": paths.port, "db_port": paths.db_port}) + "\n")
        start_mlflow(paths, workers)
    print(f"MLflow server on PostgreSQL: {paths.tracking_uri} (artifacts in {paths.artifacts})")
    print(f"log runs to it with: tracking.uri={paths.tracking_uri}")
    return paths.tracking_uri


def stop(paths: ServerLayout) -> None:
    """Stop MLflow, then PostgreSQL; either may already be down."""
    print("stopped the MLflow server" if stop_mlflow(paths) else "the MLflow server was not running")
    print("stopped PostgreSQL" if stop_postgres(paths) else "PostgreSQL was not running")


def status(paths: ServerLayout) -> dict[str, object]:
    pid = mlflow_pid(paths)
    return {
        "mlflow_pid": pid,
        "mlflow_healthy": pid is not None and healthy(paths.tracking_uri),
        "postgres": postgres_running(paths),
        "tracking_uri": paths.tracking_uri,
    }


def status_text(paths: ServerLayout) -> str:
    state = status(paths)
    mlflow_state = (
        f"MLflow pid {state['mlflow_pid']} ({'healthy' if state['mlflow_healthy'] else 'not answering'})"
        if state["mlflow_pid"]
        else "MLflow not running"
    )
    postgres_state = f"PostgreSQL on 127.0.0.1:{paths.db_port}" if state["postgres"] else "PostgreSQL not running"
    line = f"{mlflow_state}, {postgres_state}"
    return f"{line}; tracking.uri={paths.tracking_uri}" if state["mlflow_pid"] else line


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m mnist_runner.services.tracking_server",
        description="A local MLflow tracking server on PostgreSQL, listening on 127.0.0.1 only.",
    )
    parser.add_argument("command", choices=["start", "stop", "status"])
    parser.add_argument(
        "--dir",
        type=Path,
        default=DEFAULT_DIR,
        help=f"where the cluster, artifacts and logs live (default: {DEFAULT_DIR})",
    )
    parser.add_argument("--port", type=int, help=f"MLflow's port (default: the last start's, else {DEFAULT_PORT})")
    parser.add_argument(
        "--db-port", type=int, help=f"PostgreSQL's port (default: the last start's, else {DEFAULT_DB_PORT})"
    )
    parser.add_argument(
        "--workers", type=int, default=DEFAULT_WORKERS, help=f"MLflow server workers (default: {DEFAULT_WORKERS})"
    )
    args = parser.parse_args(argv)
    for option, value in (("--port", args.port), ("--db-port", args.db_port)):
        if value is not None and not 1 <= value <= 65535:
            parser.error(f"{option}={value}: a port must be between 1 and 65535")
    if args.workers < 1:
        parser.error(f"--workers={args.workers}: must be at least 1")
    paths = layout(args.dir, args.port, args.db_port)
    try:
        if args.command == "start":
            start(paths, args.workers)
        elif args.command == "stop":
            stop(paths)
        else:
            print(status_text(paths))
    except ServerError as error:
        print(f"error: {error}", file=sys.stderr)
        return error.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(main())
