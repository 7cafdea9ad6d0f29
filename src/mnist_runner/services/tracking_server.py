"""A shared MLflow tracking server on PostgreSQL, started on 127.0.0.1.

``python -m mnist_runner.services.tracking_server start|stop|status`` keeps
everything under one folder (``runs/server`` by default)::

    postgres/      the PostgreSQL cluster (data, its unix socket, postgres.log)
    pgpass         the database password, in libpq's format, mode 0600
    artifacts/     run artifacts, served by MLflow (``mlflow-artifacts:``)
    mlflow.log     the MLflow server's log
    mlflow.pid     the MLflow server's process id (its own session)
    server.json    the ports of the last start, for ``status`` and ``stop``

Runs log to it with ``tracking.uri=http://127.0.0.1:<port>``.
"""

from __future__ import annotations

import argparse
import json
import os
import pwd
import secrets
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from mnist_runner.errors import UserError
from mnist_runner.paths import RUNS_DIR

DEFAULT_DIR = RUNS_DIR / "server"
DEFAULT_PORT = 5001  # 5000 is `make ui`
DEFAULT_DB_PORT = 5433  # 5432 is a system PostgreSQL's
DEFAULT_WORKERS = 2
DB_NAME = DB_USER = "mlflow"
# The user PostgreSQL runs as when this runs as root (PostgreSQL refuses root).
SERVICE_USER = "postgres"
SOCKET_PATH_MAX = 107  # sun_path on Linux, minus the terminating NUL
INSTALL_HINT = "install them with `make install-e2e` (Debian's postgresql package)"


class ServerError(UserError):
    """The tracking server cannot be started or stopped; the message says why."""


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


# ---------------------------------------------------------------- PostgreSQL


def postgres_bin_dir() -> Path | None:
    """The folder with ``initdb`` and ``pg_ctl``: on PATH, else Debian's newest
    ``/usr/lib/postgresql/<version>/bin``; None when PostgreSQL is not installed."""
    found = shutil.which("pg_ctl")
    if found and shutil.which("initdb"):
        return Path(found).resolve().parent
    versions = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"), key=lambda p: int(p.parts[-3]) if p.parts[-3].isdigit() else 0
    )
    return versions[-1].parent if versions else None


def _pg_tool(name: str) -> str:
    folder = postgres_bin_dir()
    if folder is None:
        raise ServerError(
            f"PostgreSQL's initdb and pg_ctl were not found (PATH, /usr/lib/postgresql/*/bin); {INSTALL_HINT}"
        )
    return str(folder / name)


def _as_root() -> bool:
    return os.geteuid() == 0


def _run_pg(args: list[str], **kwargs) -> subprocess.CompletedProcess:
    """Run a PostgreSQL tool, as the ``postgres`` user when this runs as root."""
    options = {"capture_output": True, "text": True, "cwd": "/", **kwargs}
    if _as_root():
        account = pwd.getpwnam(SERVICE_USER)
        options.update(
            user=account.pw_uid,
            group=account.pw_gid,
            extra_groups=[],
            env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": account.pw_dir, "LANG": "C.UTF-8"},
        )
    return subprocess.run(args, **options)


def _untraversable_parent(folder: Path) -> Path | None:
    """The first folder on the way to ``folder`` that the ``postgres`` user cannot enter."""
    chain = [str(p) for p in reversed(folder.parents)] + [str(folder)]
    script = 'for d; do test -x "$d" || { printf %s "$d"; exit 1; }; done'
    done = _run_pg(["sh", "-c", script, "sh", *chain])
    return Path(done.stdout) if done.returncode else None


def _prepare_data_dir(paths: ServerLayout) -> None:
    """An empty cluster folder that PostgreSQL's user owns and can reach."""
    paths.data_dir.mkdir(parents=True, exist_ok=True)
    paths.data_dir.chmod(0o700)
    if not _as_root():
        return
    try:
        account = pwd.getpwnam(SERVICE_USER)
    except KeyError:
        raise ServerError(
            f"running as root, but there is no '{SERVICE_USER}' user to run PostgreSQL as "
            f"(PostgreSQL refuses root); {INSTALL_HINT}, or run as an ordinary user"
        ) from None
    os.chown(paths.data_dir, account.pw_uid, account.pw_gid)
    blocked = _untraversable_parent(paths.data_dir)
    if blocked is not None:
        raise ServerError(
            f"the '{SERVICE_USER}' user cannot reach {paths.data_dir}: it may not enter {blocked} "
            f"(mode {blocked.stat().st_mode & 0o777:o}). PostgreSQL cannot run as root, so its cluster must "
            f"be reachable by '{SERVICE_USER}': choose --dir under a folder it can enter, or allow it with "
            f"`chmod o+x {blocked}`"
        )


def _cluster_exists(paths: ServerLayout) -> bool:
    return (paths.data_dir / "PG_VERSION").is_file()


def _read_password(paths: ServerLayout) -> str:
    try:
        return paths.pgpass.read_text().strip().rsplit(":", 1)[1]
    except (OSError, IndexError):
        raise ServerError(
            f"{paths.pgpass} is missing or unreadable, so the cluster in {paths.data_dir} cannot be "
            f"used; stop the server and delete {paths.root} to start over"
        ) from None


def init_cluster(paths: ServerLayout) -> bool:
    """Create the cluster (superuser ``mlflow``, password login only) if it does
    not exist; True when it was created."""
    if _cluster_exists(paths):
        return False
    if paths.data_dir.exists() and any(paths.data_dir.iterdir()):
        raise ServerError(
            f"{paths.data_dir} holds files but no PostgreSQL cluster (no PG_VERSION); delete it or choose another --dir"
        )
    _prepare_data_dir(paths)
    password = secrets.token_urlsafe(24)
    # initdb reads the password from a file; a pipe would not do when it runs as
    # another user (the pipe belongs to root). Only its reader may open the file.
    password_file = paths.root / "initdb.pw"
    password_file.unlink(missing_ok=True)
    descriptor = os.open(password_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(descriptor, "w") as handle:
            handle.write(password + "\n")
        if _as_root():
            account = pwd.getpwnam(SERVICE_USER)
            os.chown(password_file, account.pw_uid, account.pw_gid)
        done = _run_pg(
            [
                _pg_tool("initdb"),
                "-D",
                str(paths.data_dir),
                "-U",
                DB_USER,
                f"--pwfile={password_file}",
                "--auth-local=scram-sha-256",
                "--auth-host=scram-sha-256",
                "-E",
                "UTF8",
                "--locale=C.UTF-8",
            ],
        )
    finally:
        password_file.unlink(missing_ok=True)
    if done.returncode:
        raise ServerError(f"initdb failed for {paths.data_dir}:\n{(done.stdout + done.stderr)[-2000:]}")
    # libpq's password file: host:port:database:user:password, readable only by its owner.
    paths.pgpass.unlink(missing_ok=True)
    with os.fdopen(os.open(paths.pgpass, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w") as handle:
        handle.write(f"127.0.0.1:*:*:{DB_USER}:{password}\n")
    return True


def postgres_running(paths: ServerLayout) -> bool:
    if not _cluster_exists(paths):
        return False
    return _run_pg([_pg_tool("pg_ctl"), "-D", str(paths.data_dir), "status"]).returncode == 0


def start_postgres(paths: ServerLayout) -> None:
    """Start the cluster on 127.0.0.1:<db_port>, its unix socket inside the cluster folder."""
    socket_path = paths.data_dir / f".s.PGSQL.{paths.db_port}"
    if len(str(socket_path)) > SOCKET_PATH_MAX:
        raise ServerError(
            f"--dir {paths.root} is too deep: PostgreSQL's socket {socket_path} would exceed "
            f"{SOCKET_PATH_MAX} characters; choose a shorter --dir"
        )
    _require_free_port(paths.db_port, "--db-port")
    # pg_ctl hands these to the server through a shell: the folder is quoted.
    settings = (
        f"-c listen_addresses=127.0.0.1 -c port={paths.db_port} "
        f"-c unix_socket_directories={shlex.quote(str(paths.data_dir))}"
    )
    done = _run_pg(
        [
            _pg_tool("pg_ctl"),
            "-D",
            str(paths.data_dir),
            "-l",
            str(paths.pg_log),
            "-o",
            settings,
            "-w",
            "-t",
            "60",
            "start",
        ]
    )
    if done.returncode:
        raise ServerError(
            f"PostgreSQL did not start on 127.0.0.1:{paths.db_port}:\n"
            f"{(done.stdout + done.stderr)[-1000:]}\n{_tail(paths.pg_log)}"
        )


def stop_postgres(paths: ServerLayout) -> bool:
    """Stop the cluster (fast: open sessions are ended); True when it was running."""
    if not postgres_running(paths):
        return False
    done = _run_pg([_pg_tool("pg_ctl"), "-D", str(paths.data_dir), "-m", "fast", "-w", "-t", "60", "stop"])
    if done.returncode:
        raise ServerError(f"PostgreSQL in {paths.data_dir} did not stop:\n{(done.stdout + done.stderr)[-1000:]}")
    return True


def ensure_database(paths: ServerLayout) -> None:
    """Create MLflow's database if it is missing."""
    import psycopg2

    try:
        connection = psycopg2.connect(
            host="127.0.0.1",
            port=paths.db_port,
            user=DB_USER,
            password=_read_password(paths),
            dbname="postgres",
            connect_timeout=10,
        )
    except psycopg2.Error as error:
        raise ServerError(
            f"cannot connect to PostgreSQL on 127.0.0.1:{paths.db_port} as '{DB_USER}': {error}"
        ) from error
    try:
        connection.autocommit = True  # CREATE DATABASE cannot run inside a transaction
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1 FROM pg_database WHERE datname = %s", (DB_NAME,))
            if cursor.fetchone() is None:
                cursor.execute(f"CREATE DATABASE {DB_NAME} OWNER {DB_USER}")
    finally:
        connection.close()


# ---------------------------------------------------------------- MLflow


def _tail(path: Path, lines: int = 30) -> str:
    try:
        text = path.read_text(errors="replace").splitlines()
    except OSError:
        return f"({path} could not be read)"
    return f"last lines of {path}:\n" + "\n".join(text[-lines:])


def _require_free_port(port: int, option: str) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError as error:
            raise ServerError(
                f"port {port} on 127.0.0.1 is in use ({error.strerror}); choose another {option}"
            ) from None


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
        with urllib.request.urlopen(f"{uri}/health", timeout=timeout) as response:
            return response.status == 200
    except (OSError, ValueError):
        return False


def start_mlflow(paths: ServerLayout, workers: int = DEFAULT_WORKERS, timeout: float = 180.0) -> int:
    """Start ``mlflow server`` on the cluster in the background (its own session)
    and wait until it is healthy; returns its pid."""
    _require_free_port(paths.port, "--port")
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
                f"the MLflow server exited at start (code {process.returncode}); {_tail(paths.mlflow_log)}"
            )
        if healthy(paths.tracking_uri):
            return process.pid
        time.sleep(0.5)
    _stop_process_group(process.pid)
    paths.pid_file.unlink(missing_ok=True)
    raise ServerError(f"the MLflow server was not healthy after {timeout:.0f} s; {_tail(paths.mlflow_log)}")


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
