"""The shared tracking server: PostgreSQL and `mlflow server` on 127.0.0.1,
a parallel sweep logging to it, everything read back over HTTP."""

import os
import shutil
import socket
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

import pandas as pd
import pytest
from helpers import REPORT_FILES, TempStore, skip_or_fail

from mnist_runner.services import postgres, tracking_server
from mnist_runner.services.tracking_server import ServerError, ServerLayout

pytestmark = [pytest.mark.server, pytest.mark.e2e]

URI_SECRET = "uri-secret-123"
ENV_SECRET = "env-secret-456"
TOKEN_SECRET = "env-token-789"


def free_ports(count):
    """Ports free on 127.0.0.1 now (held together, so they differ)."""
    with ExitStack() as stack:
        sockets = [stack.enter_context(socket.socket()) for _ in range(count)]
        for probe in sockets:
            probe.bind(("127.0.0.1", 0))
        return [probe.getsockname()[1] for probe in sockets]


def require_postgres():
    if postgres.postgres_bin_dir() is None:
        skip_or_fail("PostgreSQL's initdb/pg_ctl are not installed: run `make install-e2e`")


@pytest.fixture(scope="module")
def server_root():
    """A folder PostgreSQL's own user can enter: run as root, the cluster runs as
    'postgres', and pytest's tmp folders are private to root."""
    root = Path(tempfile.mkdtemp(prefix="mnist-server-"))
    root.chmod(0o711)
    yield root
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def server(server_root):
    require_postgres()
    port, db_port = free_ports(2)
    paths = ServerLayout(server_root / "server", port=port, db_port=db_port)
    try:
        started = time.monotonic()
        tracking_server.start(paths)
        print(f"\ncold start (initdb + PostgreSQL + MLflow): {time.monotonic() - started:.1f} s")
        yield paths
    finally:
        tracking_server.stop(paths)  # MLflow, then PostgreSQL, even when a test failed


def test_parallel_sweep_is_recorded_on_the_server(server, tmp_path):
    """2 jobs on 2 workers, logging over HTTP at once with credentials given the usual ways."""
    store = TempStore(tmp_path, server_uri=f"http://sweeper:{URI_SECRET}@127.0.0.1:{server.port}")
    credentials = {
        "MLFLOW_TRACKING_USERNAME": "sweeper",
        "MLFLOW_TRACKING_PASSWORD": ENV_SECRET,
        "MLFLOW_TRACKING_TOKEN": TOKEN_SECRET,
    }
    started = time.monotonic()
    done = store.run_py(
        "hydra/launcher=joblib",
        "hydra.launcher.n_jobs=2",
        "data=digits",
        "trainer.epochs=2",
        "model.dropout=0.0,0.2",
        "tracking.log_model=false",
        multirun=True,
        env=credentials,
        timeout=900,
    )
    print(f"\n2-job sweep against the server: {time.monotonic() - started:.1f} s")
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]

    on_server = TempStore(tmp_path, server_uri=server.tracking_uri)  # read back without the sweep's credentials
    client = on_server.client()
    experiment = client.get_experiment_by_name("digits")
    # The server chose where artifacts go, not the client's local default.
    assert experiment.artifact_location.startswith("mlflow-artifacts:")
    assert not store.artifacts.exists() and not (tmp_path / "mlruns").exists()

    parents, children = on_server.runs("digits", role="parent"), on_server.runs("digits", role="child")
    assert len(parents) == 1 and len(children) == 2
    parent = parents[0]
    assert parent.info.status == "FINISHED" and parent.data.metrics["jobs_finished"] == 2
    assert [c.info.status for c in children] == ["FINISHED"] * 2
    assert {c.data.tags["mlflow.parentRunId"] for c in children} == {parent.info.run_id}
    assert sorted(c.data.params["model.dropout"] for c in children) == ["0.0", "0.2"]
    logged_report = {a.path for a in client.list_artifacts(parent.info.run_id, "report")}
    assert logged_report == {f"report/{f}" for f in REPORT_FILES}

    # A child's history downloads over HTTP and is the file in the server's artifact store.
    child = children[0]
    downloaded = Path(client.download_artifacts(child.info.run_id, "history.csv", str(tmp_path / "download")))
    assert pd.read_csv(downloaded)["epoch"].tolist() == [1, 2]
    stored = server.artifacts / experiment.experiment_id / child.info.run_id / "artifacts" / "history.csv"
    assert stored.read_bytes() == downloaded.read_bytes()
    report = server.artifacts / experiment.experiment_id / parent.info.run_id / "artifacts" / "report"
    assert {p.name for p in report.iterdir()} == REPORT_FILES

    # No credential reached MLflow: params, tags, config.yaml, overrides.yaml, reports.
    # (in a multirun Hydra escapes the override's colons: http\://sweeper\:***@127.0.0.1\:<port>)
    assert "sweeper\\:***@127.0.0.1" in child.data.tags["overrides"]
    logged = [str(r.data.params) + str(r.data.tags) for r in parents + children]
    logged += [p.read_text(errors="replace") for p in server.artifacts.rglob("*") if p.is_file()]
    for secret in (URI_SECRET, ENV_SECRET, TOKEN_SECRET):
        assert not any(secret in text for text in logged), f"{secret} was logged"


def test_start_stop_and_status_are_idempotent(server, capsys):
    on_server = TempStore(server.root, server_uri=server.tracking_uri)
    kept = on_server.client().create_experiment(f"kept-{time.monotonic_ns()}")  # its own: no other test's
    pid = tracking_server.mlflow_pid(server)
    assert tracking_server.start(server) == server.tracking_uri
    assert "already running" in capsys.readouterr().out
    assert tracking_server.mlflow_pid(server) == pid
    elsewhere = ServerLayout(server.root, port=free_ports(1)[0], db_port=server.db_port)
    with pytest.raises(
        ServerError,
        match=rf"already runs with --port {server.port} --db-port {server.db_port}; "
        "stop it first to change the ports",
    ):
        tracking_server.start(elsewhere)

    assert tracking_server.stop_mlflow(server)  # half down: PostgreSQL still runs
    assert tracking_server.status(server) == {
        "mlflow_pid": None,
        "mlflow_healthy": False,
        "postgres": True,
        "tracking_uri": server.tracking_uri,
    }
    tracking_server.stop(server)
    assert "the MLflow server was not running\nstopped PostgreSQL" in capsys.readouterr().out
    tracking_server.stop(server)
    assert "the MLflow server was not running\nPostgreSQL was not running" in capsys.readouterr().out
    assert not tracking_server.healthy(server.tracking_uri)

    started = time.monotonic()
    tracking_server.start(server)  # the existing cluster: no initdb, the runs are still there
    print(f"\nwarm start (PostgreSQL + MLflow on the existing cluster): {time.monotonic() - started:.1f} s")
    state = tracking_server.status(server)
    assert state["mlflow_healthy"] and state["postgres"]
    assert on_server.client().get_experiment(kept).lifecycle_stage == "active"


class BrokenBackend(ServerLayout):
    """A backend store URI naming a database driver that does not exist."""

    @property
    def backend_uri(self):
        return "postgresql+nosuchdriver://mlflow@127.0.0.1:1/mlflow"


def test_a_server_that_dies_at_start_shows_its_log(server_root):
    """The start fails at once with the server's own error and leaves no PID
    file, instead of waiting for a health check that never comes."""
    paths = BrokenBackend(server_root / "dead", port=free_ports(1)[0])
    paths.root.mkdir()
    started = time.monotonic()
    expected = (
        r"(?s)exited at start \(code 1\); last lines of .*mlflow.log:.*"
        r"NoSuchModuleError: Can't load plugin: sqlalchemy.dialects:postgresql.nosuchdriver"
    )
    with pytest.raises(ServerError, match=expected):
        tracking_server.start_mlflow(paths, timeout=120)
    assert time.monotonic() - started < 60
    assert not paths.pid_file.exists()


@pytest.mark.skipif(os.geteuid() != 0, reason="only root runs PostgreSQL as another user")
def test_a_cluster_postgres_cannot_reach_is_refused_with_the_fix(server_root):
    require_postgres()
    private = server_root / "private"
    private.mkdir(mode=0o700)
    with pytest.raises(
        ServerError,
        match=rf"'postgres' user cannot reach .*: it may not enter {private} "
        rf"\(mode 700\).*chmod o\+x {private}",
    ):
        postgres.init_cluster(ServerLayout(private / "server"))
