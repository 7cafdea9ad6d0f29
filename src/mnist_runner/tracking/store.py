"""Connecting to a tracking store: a SQLite file or an MLflow server.

Every command that opens a store (a run, a sweep, compare, predict, the
registry, the UI) comes through here, so a store that cannot be used fails in
seconds with one line naming it.
"""

from __future__ import annotations

import base64
import os
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from mnist_runner.errors import UserError
from mnist_runner.redaction import redact

SQLITE_PREFIX = "sqlite:///"


class TrackingError(UserError):
    """The tracking store cannot be used; the message names the URI."""


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
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise TrackingError(f"tracking.uri={uri}: cannot create the store's folder ({error})") from error
    mlflow.set_tracking_uri(uri)
    client = MlflowClient()
    try:
        found = client.get_experiment_by_name(experiment)
        if found is not None:
            return found.experiment_id
        location = Path(artifact_location).resolve().as_uri() if artifact_location else None
        try:
            return client.create_experiment(experiment, artifact_location=location)
        except MlflowException:  # created by a concurrent job in the meantime
            return client.get_experiment_by_name(experiment).experiment_id
    except MlflowException as error:
        raise TrackingError(f"tracking.uri={redact(uri)}: the MLflow store is not usable ({error})") from error


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
    return MlflowClient(uri)


def check_server(uri: str, timeout: float = 5.0) -> None:
    """Fail fast on a server that is down: MLflow's client would retry for minutes.

    A server behind authentication gets the credentials MLflow itself would
    send (``user:password@`` in the URI, or MLFLOW_TRACKING_USERNAME/PASSWORD
    or MLFLOW_TRACKING_TOKEN); a 401 or 403 still means that a server answers.
    """
    url, authorization = _health_request(uri)
    request = urllib.request.Request(url, headers={"Authorization": authorization} if authorization else {})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            response.read()
    except urllib.error.HTTPError as error:
        if error.code in (401, 403):  # up, but the credentials are missing or wrong: MLflow will say so
            return
        raise _server_down(uri, f"HTTP {error.code} {error.reason}") from error
    except (OSError, ValueError) as error:
        raise _server_down(uri, str(error)) from error


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
