"""`mnist-ui`: the URL it prints, the server it starts, its errors."""

import socket
from urllib.parse import urlsplit

import pytest

from mnist_runner.services import ui


def test_chart_url_opens_the_runs_page_in_chart_mode():
    url = urlsplit(ui.chart_url("7", port=5123))
    assert (url.scheme, url.hostname, url.port, url.path) == ("http", "127.0.0.1", 5123, "/")
    # The UI routes on the fragment: the runs of experiment 7, compared as charts.
    route, _, query = url.fragment.partition("?")
    assert route == "/experiments/7/runs"
    # In the UI's model-training view, not its GenAI one.
    assert query == "compareRunsMode=CHART&workflowType=machine_learning"


@pytest.fixture
def no_exec(monkeypatch):
    """Record the command ``main`` would replace itself with, instead of running it."""
    calls = []
    monkeypatch.setattr(ui.os, "execve", lambda path, argv, env: calls.append((path, argv, env)))
    return calls


def test_prints_the_chart_url_of_the_experiment_and_serves_the_store_on_localhost(tmp_store, no_exec, capsys):
    uri = tmp_store.uri
    tmp_store.client().create_experiment("other")
    experiment_id = tmp_store.client().create_experiment("mnist")
    port = free_port()

    ui.main(["--uri", uri, "--port", str(port)])

    assert ui.chart_url(experiment_id, port) in capsys.readouterr().out
    [(path, argv, env)] = no_exec
    assert argv[argv.index("server") + 1 : argv.index("server") + 7] == [
        "--backend-store-uri",
        uri,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
    ]
    assert path == argv[0]
    assert env["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] == "false"


def test_the_ui_server_logs_warnings_only():
    command = ui.server_command("sqlite:////tmp/x/mlflow.db", 5000)
    at = command.index("--uvicorn-opts")
    assert command[at + 1] == "--log-level warning"


def test_a_new_store_gets_its_folder_and_the_root_url(tmp_path, no_exec, capsys):
    store = tmp_path / "new" / "mlflow.db"
    port = free_port()

    ui.main(["--uri", f"sqlite:///{store}", "--port", str(port), "--experiment", "digits"])

    out = capsys.readouterr().out
    assert f"http://127.0.0.1:{port}/ " in out and "#/experiments" not in out
    assert "'digits' appears after its first run" in out
    # Created as a run creates it (atomically, under a lock), not by the server:
    # a run started at the same moment cannot race the server's own creation.
    assert store.is_file() and not list(store.parent.glob(".mlflow.db.creating-*"))
    assert len(no_exec) == 1


@pytest.mark.parametrize(
    "uri, says",
    [
        ("runs/mlflow.db", "not a database store URI"),
        ("file:///tmp/mlruns", "not a database store URI"),
        ("mongodb://127.0.0.1/db", "not a database store URI"),
        ("http://127.0.0.1:5000", "that is a tracking server, which serves its own UI"),
    ],
)
def test_a_uri_the_server_cannot_serve_is_refused_with_what_it_accepts(uri, says, no_exec, capsys):
    assert ui.main(["--uri", uri]) == 2
    err = capsys.readouterr().err
    assert f"--uri {uri}: {says}" in err
    assert "sqlite:////absolute/path/mlflow.db" in err and "postgresql+psycopg2://" in err
    assert no_exec == []


def test_a_password_in_the_uri_is_not_printed(capsys):
    assert ui.main(["--uri", "https://me:s3cret@tracking.example.org"]) == 2
    err = capsys.readouterr().err
    assert "--uri https://me:***@tracking.example.org: that is a tracking server" in err and "s3cret" not in err


def test_an_unreadable_store_is_refused(tmp_path, no_exec, capsys):
    store = tmp_path / "mlflow.db"
    store.write_text("not a database")
    assert ui.main(["--uri", f"sqlite:///{store}", "--port", str(free_port())]) == 2
    assert f"--uri sqlite:///{store}: the file is not an SQLite database" in capsys.readouterr().err
    assert no_exec == []


def test_a_busy_port_is_refused_before_the_slow_start(tmp_store, no_exec, capsys):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        assert ui.main(["--uri", tmp_store.uri, "--port", str(port)]) == 2
    err = capsys.readouterr().err
    assert f"--port {port}: cannot listen on 127.0.0.1:{port}" in err and "make ui PORT=" in err
    assert no_exec == []


def test_a_port_out_of_range_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exit_:
        ui.main(["--port", "70000"])
    assert exit_.value.code == 2
    assert "70000 is not a TCP port (1-65535)" in capsys.readouterr().err


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.slow
def test_the_browser_helpers_report_a_ui_that_dies_at_start_with_its_output(tmp_path):
    from helpers import ui_browser

    with pytest.raises(RuntimeError, match=r"the UI exited with 2:\n.*--uri mongodb://127.0.0.1/db: not a database"):
        with ui_browser.ui_server("mongodb://127.0.0.1/db", tmp_path / "ui.log"):
            pass


@pytest.mark.parametrize("required, outcome", [("", pytest.skip.Exception), ("1", pytest.fail.Exception)])
def test_a_missing_browser_skips_unless_required(monkeypatch, required, outcome):
    from helpers import ui_browser

    monkeypatch.setattr(ui_browser, "CHROMIUM", ui_browser.Path("/nonexistent/chromium"))
    monkeypatch.setenv("MNIST_RUNNER_REQUIRE_E2E", required)
    with pytest.raises(outcome, match="make install-e2e"):
        ui_browser.require_browser()
