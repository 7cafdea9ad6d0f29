"""Connecting to a tracking store: a SQLite file or an MLflow server.

Every command that opens a store (a run, a sweep, compare, predict, the
registry, the UI) comes through here, so that:

- a store that cannot be used fails in seconds with one line naming it and
  the cause (``TrackingError``), never a traceback;
- any number of processes can start on a new SQLite store at once: the first
  creates it under a file lock beside it, in a temporary file renamed into
  place, so no process sees a half-created store (MLflow's own creation,
  run by several processes at once, broke stores for good);
- runs left behind are closed: final states that could not be written
  before (``pending``) are written, and runs whose process died are ended
  KILLED (``liveness``).
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import logging
import os
import random
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Callable, Iterator, TypeVar

from mnist_runner.errors import EXIT_FAILED, UserError
from mnist_runner.redaction import redact

log = logging.getLogger(__name__)
# MLflow logs every SQLite error with its traceback before raising it; this
# module turns the error into one line, so those tracebacks only repeat it.
logging.getLogger("mlflow.store.db.utils").setLevel(logging.CRITICAL)

SQLITE_PREFIX = "sqlite:///"
# What a store says when a row another process has just written is written again.
DUPLICATE_ROW = ("UNIQUE constraint failed", "duplicate key value", "RESOURCE_ALREADY_EXISTS")
T = TypeVar("T")
# The MLflow UI opens an experiment of this kind in its model-training view
# (runs, charts), not its GenAI one (traces, judges, prompts).
EXPERIMENT_KIND, MODEL_TRAINING = "mlflow.experimentKind", "custom_model_development"


class TrackingError(UserError):
    """The tracking store cannot be used; the message names the URI."""


class StoreWriteError(TrackingError):
    """The store stopped accepting writes while a run was under way."""

    exit_code = EXIT_FAILED


def sqlite_path(uri: str) -> Path | None:
    """The database file of a ``sqlite:///`` URI (``sqlite:////abs/path``), else None."""
    return Path(uri.removeprefix(SQLITE_PREFIX)) if uri.startswith(SQLITE_PREFIX) else None


def is_server(uri: str) -> bool:
    return uri.startswith(("http://", "https://"))


def connect(uri: str, experiment: str, artifact_location: str | None) -> str:
    """Point MLflow at ``uri`` and return the id of ``experiment``, created if new.

    Called before any data is loaded, so an unreachable or unwritable store
    fails within seconds. A new experiment keeps its artifacts under
    ``artifact_location``; without one MLflow would put them in ``./mlruns``
    of whatever the cwd is. On a tracking server the server decides (served
    artifacts, ``mlflow-artifacts:``): a local folder there would make every
    client write the artifacts to its own disk, out of the server's reach.
    """
    import mlflow
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    if is_server(uri):
        check_server(uri)
        artifact_location = None
        if redact(uri) != uri:
            # MLflow's own "View run ... at: <uri>" line would show the password.
            os.environ["MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT"] = "true"
    elif (path := sqlite_path(uri)) is not None:
        ensure_sqlite_store(path, "tracking.uri")
    mlflow.set_tracking_uri(uri)
    with store_errors(uri, "tracking.uri"):
        client = MlflowClient()
        found = client.get_experiment_by_name(experiment)
        if found is None:
            location = Path(artifact_location).resolve().as_uri() if artifact_location else None
            try:
                client.create_experiment(experiment, artifact_location=location)
            except MlflowException:
                if client.get_experiment_by_name(experiment) is None:
                    raise  # not created by a concurrent job in the meantime: the store refused
            found = client.get_experiment_by_name(experiment)
        if found.tags.get(EXPERIMENT_KIND) != MODEL_TRAINING:
            client.set_experiment_tag(found.experiment_id, EXPERIMENT_KIND, MODEL_TRAINING)
        tidy(client, uri)
        return found.experiment_id


def open_existing(uri: str, option: str = "--uri"):
    """A client of an existing store, for commands that only read one: a
    missing SQLite file or a server that does not answer is an error (MLflow
    would create an empty store, or retry for minutes)."""
    import mlflow
    from mlflow.tracking import MlflowClient

    path = sqlite_path(uri)
    if path is not None and not path.is_file():
        raise TrackingError(f"{option} {redact(uri)}: no MLflow store there (train a model first: python run.py)")
    if is_server(uri):
        check_server(uri)
    mlflow.set_tracking_uri(uri)
    with store_errors(uri, option):
        client = MlflowClient(uri)
        client.search_experiments(max_results=1)  # opens the store: a broken one fails here, in one line
        tidy(client, uri)
    return client


def tidy(client, uri: str) -> None:
    """Close what earlier processes left open: final states kept while the
    store could not be written, then runs whose process died. Never fails
    the command that opened the store."""
    from mnist_runner.tracking import liveness, pending

    try:
        pending.flush(client, uri)
        liveness.reap_dead_runs(client)
    except Exception as error:  # housekeeping: the command's own work decides
        log.debug("could not close runs left behind in %s: %s", redact(uri), error)


def ensure_sqlite_store(path: Path, option: str) -> None:
    """Make sure the SQLite store at ``path`` exists, creating it atomically
    if it does not: see the module's docstring."""
    uri = f"{SQLITE_PREFIX}{path}"
    if path.is_dir():
        raise TrackingError(f"{option}={uri}: {path} is a folder; give the database file, e.g. {path / 'mlflow.db'}")
    if path.is_file() and path.stat().st_size > 0:
        return
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise TrackingError(f"{option}={uri}: cannot create the store's folder ({error})") from error
    with creation_lock(path, option):
        if path.is_file() and path.stat().st_size > 0:  # created by another process meanwhile
            return
        creating = path.with_name(f".{path.name}.creating-{os.getpid()}")
        creating.unlink(missing_ok=True)
        try:
            with store_errors(uri, option):
                create_store_file(creating)
            os.replace(creating, path)
        finally:
            creating.unlink(missing_ok=True)


@contextlib.contextmanager
def creation_lock(path: Path, option: str) -> Iterator[None]:
    lock_path = path.with_name(f"{path.name}.lock")
    try:
        handle = open(lock_path, "a")  # held for the block
    except OSError as error:
        raise TrackingError(f"{option}={SQLITE_PREFIX}{path}: cannot create the store ({error})") from error
    with handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def create_store_file(path: Path) -> None:
    """A new SQLite store at ``path``, with MLflow's tables."""
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    db_uri = f"{SQLITE_PREFIX}{path}"
    SqlAlchemyStore(db_uri, "./mlruns")
    engine = SqlAlchemyStore._engine_map.pop(db_uri, None)  # MLflow caches one engine per URI
    if engine is not None:
        engine.dispose()


@contextlib.contextmanager
def store_errors(uri: str, option: str) -> Iterator[None]:
    """MLflow's and SQLite's errors as one line naming the store and the cause."""
    from mlflow.exceptions import MlflowException
    from sqlalchemy.exc import SQLAlchemyError

    try:
        yield
    except (MlflowException, SQLAlchemyError, OSError) as error:
        raise TrackingError(f"{option}={redact(uri)}: {store_problem(error)}") from error


def store_problem(error: BaseException) -> str:
    """What went wrong with a store, in a few words, from MLflow's or SQLite's error."""
    text = str(error)
    causes = {
        "database is locked": "the store is locked by another process (SQLite waited for it, then gave up)",
        "database or disk is full": "the disk is full",
        "No space left on device": "the disk is full",
        "readonly database": "the store is read-only",
        "Read-only file system": "the store is on a read-only file system",
        "file is not a database": "the file is not an SQLite database",
        "unable to open database file": "the database file cannot be opened",
        "disk I/O error": "a disk I/O error (the disk may be full or failing)",
        "out-of-date database schema": "the store was made by an older MLflow; upgrade it: `mlflow db upgrade <uri>`",
    }
    for marker, meaning in causes.items():
        if marker in text:
            return meaning
    first = text.strip().splitlines()[0] if text.strip() else type(error).__name__
    return f"the MLflow store is not usable ({first[:300]})"


def check_server(uri: str, timeout: float = 5.0) -> None:
    """Fail fast on a server that is down: MLflow's client would retry for minutes.

    A server behind authentication gets the credentials MLflow itself would
    send (``user:password@`` in the URI, or MLFLOW_TRACKING_USERNAME/PASSWORD
    or MLFLOW_TRACKING_TOKEN); a 401 or 403 still means that a server answers.
    """
    try:
        health_status(uri, timeout)
    except urllib.error.HTTPError as error:
        if error.code in (401, 403):  # up, but the credentials are missing or wrong: MLflow will say so
            return
        raise _server_down(uri, f"HTTP {error.code} {error.reason}") from error
    except (OSError, ValueError) as error:
        raise _server_down(uri, str(error)) from error


def health_status(uri: str, timeout: float) -> int:
    """The HTTP status with which the MLflow server at ``uri`` answers ``/health``,
    sent the credentials MLflow itself would send. An answer of 400 or more
    raises ``urllib.error.HTTPError``; no answer raises ``OSError`` or ``ValueError``."""
    url, authorization = _health_request(uri)
    request = urllib.request.Request(url, headers={"Authorization": authorization} if authorization else {})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        response.read()
        return response.status


def _health_request(uri: str) -> tuple[str, str | None]:
    """The health URL without any ``user:password@``, and the Authorization header to send."""
    parts = urllib.parse.urlsplit(uri)
    netloc = parts.netloc.rpartition("@")[2]
    url = urllib.parse.urlunsplit((parts.scheme, netloc, parts.path.rstrip("/") + "/health", "", ""))
    username = urllib.parse.unquote(parts.username or "") or os.environ.get("MLFLOW_TRACKING_USERNAME")
    password = urllib.parse.unquote(parts.password or "") or os.environ.get("MLFLOW_TRACKING_PASSWORD")
    token = os.environ.get("MLFLOW_TRACKING_TOKEN")
    if username and password:
        return url, "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()
    if token:
        return url, f"Bearer {token}"
    return url, None


def _server_down(uri: str, reason: str) -> TrackingError:
    return TrackingError(
        f"tracking.uri={redact(uri)}: no MLflow server answers there ({reason}); start one "
        "(`make ui` serves the local store, `make server` a PostgreSQL-backed server) or choose another tracking.uri"
    )


def written_once(write: Callable[[], T], what: str, attempts: int = 4) -> T:
    """``write()``, once more where it failed because another process wrote
    the same row at the same moment.

    MLflow looks some shared rows up, then inserts them, in two steps (a
    data set of an experiment, logged by every run that uses it): two jobs
    of a sweep doing so at once both find nothing, and the slower insert
    fails on the row the faster one wrote. The write then finds that row and
    goes through; any other error is raised as it is."""
    for attempt in range(1, attempts + 1):
        try:
            return write()
        except Exception as error:
            if attempt == attempts or not any(marker in str(error) for marker in DUPLICATE_ROW):
                raise
            log.info("%s: another process wrote the same row at the same moment; writing again", what)
            time.sleep(random.uniform(0.01, 0.1) * attempt)  # jittered: two retrying jobs do not meet again
    raise AssertionError("unreachable")
