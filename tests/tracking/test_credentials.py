"""Credentials of a tracking server never reach MLflow, and the health probe
gets through a server that asks for them."""

import base64
import http.server
import threading

import mlflow
import pytest
import yaml
from mlflow.tracking import MlflowClient

from mnist_runner.redaction import redact, redact_override
from mnist_runner.tracking import records as tracking
from mnist_runner.tracking.store import TrackingError, check_server


@pytest.mark.parametrize(
    ("uri", "masked"),
    [
        ("http://alice:s3cret@127.0.0.1:5001", "http://alice:***@127.0.0.1:5001"),
        ("https://:tok3n@mlflow.example/prefix", "https://:***@mlflow.example/prefix"),  # token as password
        ("http://alice:p@ss:w0rd@host:5000/x", "http://alice:***@host:5000/x"),  # unescaped @ and :
        ("postgresql+psycopg2://mlflow:pw@127.0.0.1:5433/db", "postgresql+psycopg2://mlflow:***@127.0.0.1:5433/db"),
        ("http://127.0.0.1:5001", "http://127.0.0.1:5001"),  # a port is not a password
        ("http://alice@host:5000", "http://alice@host:5000"),
        ("http://host:5000/a@b", "http://host:5000/a@b"),  # @ in the path, no userinfo
    ],
)
def test_passwords_in_uris_are_masked(uri, masked):
    assert redact(uri, "tracking.uri") == masked
    assert redact_override(f"tracking.uri={uri}") == f"tracking.uri={masked}"


def test_logged_config_holds_no_uri_password(tmp_store, monkeypatch):
    """What log_config writes to MLflow: params, config.yaml, overrides.yaml."""
    monkeypatch.chdir(tmp_store.root)
    secret = "uri-secret-123"
    uri = f"http://alice:{secret}@127.0.0.1:5001"
    resolved = {"tracking": {"uri": uri, "experiment": "mnist"}, "trainer": {"epochs": 2}}
    flat = {"tracking.uri": uri, "tracking.experiment": "mnist", "trainer.epochs": 2}
    mlflow.set_tracking_uri(tmp_store.uri)
    experiment = MlflowClient().create_experiment("creds", artifact_location=tmp_store.artifacts.as_uri())
    with mlflow.start_run(experiment_id=experiment) as run:
        tracking.log_config(resolved, flat, [f"tracking.uri={uri}", "trainer.epochs=2"])
    client = MlflowClient()
    params = client.get_run(run.info.run_id).data.params
    config = yaml.safe_load(mlflow.artifacts.load_text(f"runs:/{run.info.run_id}/config.yaml"))
    overrides = yaml.safe_load(mlflow.artifacts.load_text(f"runs:/{run.info.run_id}/overrides.yaml"))
    assert params["tracking.uri"] == "http://alice:***@127.0.0.1:5001"
    assert config["tracking"]["uri"] == "http://alice:***@127.0.0.1:5001"
    assert overrides == ["tracking.uri=http://alice:***@127.0.0.1:5001", "trainer.epochs=2"]
    assert secret not in str(params) + str(config) + str(overrides)


class _AuthServer(http.server.BaseHTTPRequestHandler):
    """/health behind basic auth for alice:wonderland; records what it was sent."""

    seen: list[tuple[str, str | None]] = []

    def do_GET(self):
        authorization = self.headers.get("Authorization")
        _AuthServer.seen.append((self.path, authorization))
        expected = "Basic " + base64.b64encode(b"alice:wonderland").decode()
        if self.path != "/health":
            self.send_response(404)
        elif authorization not in (expected, "Bearer t0ken"):
            self.send_response(401)
            self.send_header("WWW-Authenticate", 'Basic realm="mlflow"')
        else:
            self.send_response(200)
        self.end_headers()
        self.wfile.write(b"OK")

    def log_message(self, *args):
        pass


@pytest.fixture
def auth_server(monkeypatch):
    for name in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD", "MLFLOW_TRACKING_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    _AuthServer.seen = []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _AuthServer)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_health_probe_sends_credentials_from_the_environment(auth_server, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "alice")
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", "wonderland")
    check_server(f"http://{auth_server}")
    assert _AuthServer.seen == [("/health", "Basic " + base64.b64encode(b"alice:wonderland").decode())]


def test_health_probe_sends_a_token_from_the_environment(auth_server, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", "t0ken")
    check_server(f"http://{auth_server}/")
    assert _AuthServer.seen == [("/health", "Bearer t0ken")]


def test_health_probe_takes_credentials_from_the_uri(auth_server):
    check_server(f"http://alice:wonderland@{auth_server}")
    assert _AuthServer.seen == [("/health", "Basic " + base64.b64encode(b"alice:wonderland").decode())]


def test_a_server_that_refuses_the_credentials_still_answers(auth_server):
    check_server(f"http://{auth_server}")  # 401: up; MLflow's own calls will report the refusal
    assert _AuthServer.seen == [("/health", None)]


def test_errors_do_not_show_the_password(auth_server):
    with pytest.raises(
        TrackingError,
        match=r"tracking.uri=http://alice:\*\*\*@.*/nothing-here: no MLflow server "
        r"answers there \(HTTP 404",
    ) as raised:
        check_server(f"http://alice:wonderland@{auth_server}/nothing-here")
    assert "wonderland" not in str(raised.value)
