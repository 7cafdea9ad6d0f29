"""``mnist-dashboard`` (``make dashboard``) before it serves: what it refuses, what it prints."""

import socket

import optuna
import pytest

from mnist_runner.errors import EXIT_USAGE
from mnist_runner.services import dashboard


def test_a_missing_study_database_is_not_created(tmp_path, capsys):
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    assert dashboard.main(["--storage", storage, "--port", "8099"]) == EXIT_USAGE
    assert "no search study there yet" in capsys.readouterr().err
    assert not (tmp_path / "optuna.db").exists()


def test_a_file_that_is_no_study_database(tmp_path):
    (tmp_path / "notes.db").write_text("not a database")
    with pytest.raises(dashboard.DashboardError, match="not an Optuna study database"):
        dashboard.list_studies(f"sqlite:///{tmp_path / 'notes.db'}")


def test_studies_are_listed_with_their_addresses(tmp_path):
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    optuna.create_study(storage=storage, study_name="first")
    second = optuna.create_study(storage=storage, study_name="second")
    second.enqueue_trial({"x": 1.0})
    second.optimize(lambda trial: trial.suggest_float("x", 0, 2), n_trials=2)
    assert dashboard.list_studies(storage) == [(1, "first", 0), (2, "second", 2)]
    assert dashboard.dashboard_url(8080, 2) == "http://127.0.0.1:8080/dashboard/studies/2"


def test_a_busy_port_is_refused_before_serving():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(dashboard.DashboardError, match=f"--port {port}: cannot listen on 127.0.0.1"):
            dashboard.check_port_free(port)


def test_it_serves_this_machine_only():
    assert dashboard.HOST == "127.0.0.1"
    assert dashboard.DEFAULT_STORAGE.endswith("/runs/optuna.db")
