"""The PostgreSQL cluster under a tracking server's folder (see
``tracking_server``): created with a password only its owner can read,
started on 127.0.0.1 with its socket inside the cluster, stopped, and given
MLflow's database. Run as root, its tools run as the ``postgres`` user:
PostgreSQL refuses to run as root."""

from __future__ import annotations

import os
import pwd
import secrets
import shlex
import shutil
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING

from mnist_runner.errors import UserError
from mnist_runner.services.startup import bind_error, log_tail

if TYPE_CHECKING:  # the layout is the tracking server's; it imports this module
    from mnist_runner.services.tracking_server import ServerLayout

DB_NAME = DB_USER = "mlflow"
# The user PostgreSQL runs as when this runs as root (PostgreSQL refuses root).
SERVICE_USER = "postgres"
SOCKET_PATH_MAX = 107  # sun_path on Linux, minus the terminating NUL
INSTALL_HINT = "install them with `make install-e2e` (Debian's postgresql package)"


class ServerError(UserError):
    """The tracking server cannot be started or stopped; the message says why."""


def require_free_port(port: int, option: str) -> None:
    error = bind_error(port)
    if error is not None:
        raise ServerError(f"port {port} on 127.0.0.1 is in use ({error.strerror}); choose another {option}")


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
    require_free_port(paths.db_port, "--db-port")
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
            f"{(done.stdout + done.stderr)[-1000:]}\n{log_tail(paths.pg_log, 30)}"
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
