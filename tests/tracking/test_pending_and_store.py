"""Final states kept while the store cannot be written (``pending``), and
opening or creating a SQLite store (``store``): atomic creation, one-line
errors, the experiments it opens (in the UI's model-training view, on a
store of hand-made runs: ``helpers.fake_runs``), concurrent creation."""

from __future__ import annotations

import fcntl
import json
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers.store_copies import open_store, store_template
from mlflow.exceptions import MlflowException
from sqlalchemy.exc import OperationalError

from mnist_runner.tracking import liveness, pending, store
from mnist_runner.tracking.store import TrackingError

# ---------------------------------------------------------------- pending


@pytest.fixture
def kept(tmp_path, monkeypatch):
    """A new store with one RUNNING run of this process; pending records go to
    two folders under ``tmp_path``."""
    temp, experiment_id = open_store(tmp_path / "store", monkeypatch)
    folders = [tmp_path / "pending", tmp_path / "fallback"]
    monkeypatch.setattr(pending, "folders", lambda: list(folders))
    client = temp.client()
    run_id = client.create_run(experiment_id, tags=liveness.process_tags()).info.run_id
    return temp, client, run_id, folders


def files_in(*folders: Path) -> list[Path]:
    return sorted(path for folder in folders if folder.is_dir() for path in folder.iterdir())


def test_a_kept_final_state_is_written_when_the_store_can_be_written(kept):
    temp, client, run_id, folders = kept
    before = int(time.time() * 1000)
    path = pending.keep(temp.uri, run_id, "FAILED", "ValueError: boom")
    after = int(time.time() * 1000)
    assert path is not None and path.parent == folders[0]
    assert files_in(*folders) == [path]  # no partial file beside it
    assert json.loads(path.read_text())["status"] == "FAILED"
    assert client.get_run(run_id).info.status == "RUNNING"  # nothing written yet

    assert pending.flush(client, temp.uri) == [run_id]

    run = client.get_run(run_id)
    assert run.info.status == "FAILED"
    assert run.data.tags["failure_reason"] == "ValueError: boom"
    assert before <= run.info.end_time <= after  # when it ended, not when it was written
    assert files_in(*folders) == []
    assert pending.flush(client, temp.uri) == []


def test_opening_the_store_writes_kept_states(kept):
    temp, client, run_id, folders = kept
    pending.keep(temp.uri, run_id, "KILLED", "interrupted")
    store.open_existing(temp.uri)
    run = client.get_run(run_id)
    assert (run.info.status, run.data.tags["failure_reason"]) == ("KILLED", "interrupted")
    assert files_in(*folders) == []


def test_a_run_reopened_by_another_process_is_not_ended(kept):
    temp, client, run_id, folders = kept
    pending.keep(temp.uri, run_id, "FAILED", "ValueError: boom")
    client.set_tag(run_id, liveness.TAG_PID, str(os.getpid() + 1))  # resumed since, by another process
    pending.flush(client, temp.uri)
    run = client.get_run(run_id)
    assert run.info.status == "RUNNING" and "failure_reason" not in run.data.tags
    assert files_in(*folders) == []  # the record is obsolete


def test_a_run_ended_since_keeps_its_state(kept):
    temp, client, run_id, folders = kept
    pending.keep(temp.uri, run_id, "FAILED", "ValueError: boom")
    client.set_terminated(run_id, "FINISHED")
    pending.flush(client, temp.uri)
    assert client.get_run(run_id).info.status == "FINISHED"
    assert files_in(*folders) == []


def test_records_of_another_store_are_left_alone(kept):
    temp, client, run_id, folders = kept
    other = pending.keep(f"{temp.uri}.other", run_id, "FAILED", "ValueError: boom")
    assert pending.flush(client, temp.uri) == []
    assert other.is_file()
    assert client.get_run(run_id).info.status == "RUNNING"


def test_a_record_of_a_run_that_no_longer_exists_is_dropped(kept):
    temp, client, _, folders = kept
    pending.keep(temp.uri, "0" * 32, "FAILED", None)
    assert pending.flush(client, temp.uri) == []
    assert files_in(*folders) == []


def test_a_record_stays_while_the_store_cannot_be_read(kept):
    temp, _, run_id, folders = kept
    path = pending.keep(temp.uri, run_id, "FAILED", None)

    class LockedStore:
        def get_run(self, run_id):
            raise MlflowException("(sqlite3.OperationalError) database is locked")

    assert pending.flush(LockedStore(), temp.uri) == []
    assert files_in(*folders) == [path]


def test_an_unwritable_first_folder_means_the_second(kept, tmp_path, monkeypatch):
    temp, client, run_id, _ = kept
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    second = tmp_path / "second"
    monkeypatch.setattr(pending, "folders", lambda: [blocker / "pending", second])
    path = pending.keep(temp.uri, run_id, "FAILED", "ValueError: boom")
    assert path is not None and path.parent == second
    assert pending.flush(client, temp.uri) == [run_id]
    assert client.get_run(run_id).info.status == "FAILED"
    assert files_in(second) == []


def test_nowhere_to_keep_it_is_said(tmp_path, monkeypatch):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    monkeypatch.setattr(pending, "folders", lambda: [blocker / "one", blocker / "two"])
    assert pending.keep("sqlite:////x/mlflow.db", "a" * 32, "FAILED", None) is None


def test_a_kept_record_holds_no_password(tmp_path, monkeypatch):
    monkeypatch.setattr(pending, "folders", lambda: [tmp_path])
    path = pending.keep("http://user:s3cr3t-pw@tracking.example/", "a" * 32, "FAILED", None)
    assert "s3cr3t-pw" not in path.read_text()


# ---------------------------------------------------------------- creating a store


def lock_is_free(path: Path) -> bool:
    with open(path.with_name(f"{path.name}.lock"), "a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        fcntl.flock(handle, fcntl.LOCK_UN)
        return True


def test_a_new_store_appears_only_once_complete(tmp_path, monkeypatch):
    path = tmp_path / "sub" / "mlflow.db"
    seen = {}

    def create(target: Path) -> None:
        seen.update(target=target, exists=path.exists(), locked=not lock_is_free(path))
        target.write_bytes(b"SQLite format 3\0 and the rest")

    monkeypatch.setattr(store, "create_store_file", create)
    store.ensure_sqlite_store(path, "tracking.uri")
    assert seen["target"] != path and seen["target"].parent == path.parent
    assert not seen["exists"]  # the store's own name appears only when it is complete
    assert seen["locked"]  # and only one process creates it
    assert path.read_bytes() == b"SQLite format 3\0 and the rest"
    assert sorted(p.name for p in path.parent.iterdir()) == ["mlflow.db", "mlflow.db.lock"]
    assert lock_is_free(path)


def test_an_existing_store_is_not_created_again_but_an_empty_file_is(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(store, "create_store_file", lambda target: (calls.append(target), target.write_bytes(b"new")))
    path = tmp_path / "mlflow.db"
    path.write_bytes(b"")
    store.ensure_sqlite_store(path, "tracking.uri")
    assert path.read_bytes() == b"new" and len(calls) == 1
    store.ensure_sqlite_store(path, "tracking.uri")
    assert len(calls) == 1


def test_a_failed_creation_leaves_nothing_behind(tmp_path, monkeypatch):
    path = tmp_path / "mlflow.db"

    def create(target: Path) -> None:
        target.write_bytes(b"half a store")
        raise OperationalError("CREATE TABLE experiments", {}, Exception("database or disk is full"))

    monkeypatch.setattr(store, "create_store_file", create)
    with pytest.raises(TrackingError) as error:
        store.ensure_sqlite_store(path, "tracking.uri")
    assert str(error.value) == f"tracking.uri=sqlite:///{path}: the disk is full"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mlflow.db.lock"]
    assert lock_is_free(path)


def test_a_store_made_by_the_project_is_whole():
    path = store_template()
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert {"experiments", "runs", "tags", "metrics", "alembic_version"} <= tables
    assert not any(name.startswith("_alembic_tmp") for name in tables)
    assert sorted(p.name for p in path.parent.iterdir()) == ["mlflow.db", "mlflow.db.lock"]


def test_a_folder_is_refused_in_one_line(tmp_path):
    with pytest.raises(TrackingError) as error:
        store.ensure_sqlite_store(tmp_path, "tracking.uri")
    message = str(error.value)
    assert "\n" not in message
    assert message.startswith(f"tracking.uri=sqlite:///{tmp_path}: {tmp_path} is a folder")
    assert str(tmp_path / "mlflow.db") in message  # what to give instead


@pytest.mark.parametrize(
    "text, cause",
    [
        ("(sqlite3.OperationalError) database is locked", "the store is locked by another process"),
        ("(sqlite3.OperationalError) database or disk is full", "the disk is full"),
        ("[Errno 28] No space left on device", "the disk is full"),
        ("(sqlite3.DatabaseError) file is not a database", "the file is not an SQLite database"),
        ("attempt to write a readonly database", "the store is read-only"),
        ("(sqlite3.OperationalError) disk I/O error", "a disk I/O error"),
    ],
)
def test_store_problems_in_a_few_words(text, cause):
    said = store.store_problem(MlflowException(f"{text}\n[SQL: UPDATE runs SET status=?]\n(Background ...)"))
    assert said.startswith(cause)
    assert "\n" not in said and "UPDATE runs" not in said


def test_an_unknown_store_problem_is_its_first_line():
    said = store.store_problem(RuntimeError("something odd\nand a long tail"))
    assert said == "the MLflow store is not usable (something odd)"


def test_a_file_that_is_not_a_database_is_refused_and_kept(tmp_path, monkeypatch):
    from helpers.store_copies import keep_tracking_uri

    keep_tracking_uri(monkeypatch)
    path = tmp_path / "mlflow.db"
    junk = b"these are my notes, not a database\n" * 100
    path.write_bytes(junk)
    uri = f"sqlite:///{path}"
    with pytest.raises(TrackingError) as error:
        store.connect(uri, "exp", str(tmp_path / "artifacts"))
    assert str(error.value) == f"tracking.uri={uri}: the file is not an SQLite database"
    assert path.read_bytes() == junk  # never replaced by a new store


def test_reading_a_missing_store_creates_nothing(tmp_path):
    path = tmp_path / "nowhere" / "mlflow.db"
    with pytest.raises(TrackingError) as error:
        store.open_existing(f"sqlite:///{path}")
    assert f"sqlite:///{path}: no MLflow store there" in str(error.value)
    assert not path.parent.exists()


# ---------------------------------------------------------------- the experiments it opens


def test_experiments_open_in_the_model_training_view(fake_store):
    client = fake_store.client()
    for name in ("mixed", "digits", "fashion_mnist"):
        assert client.get_experiment_by_name(name).tags.get("mlflow.experimentKind") == "custom_model_development"


# ---------------------------------------------------------------- many processes at once

CONNECT = """
import sys, time
from pathlib import Path
from mnist_runner.tracking import store
uri, artifacts, ready, go = sys.argv[1:]
Path(ready).touch()
while not Path(go).exists():
    time.sleep(0.005)
store.connect(uri, "exp", artifacts)
"""


@pytest.mark.slow
def test_processes_starting_at_once_on_a_new_store_share_one_good_store(tmp_path):
    """8 processes open a store that does not exist yet at the same moment
    (each waits, imports done, for the same signal): all succeed, one store.
    `make faults` repeats this with whole runs, many times."""
    path = tmp_path / "store" / "mlflow.db"
    uri = f"sqlite:///{path}"
    go = tmp_path / "go"
    env = {key: value for key, value in os.environ.items() if key != "MLFLOW_TRACKING_URI"}
    processes = []
    for number in range(8):
        command = [
            sys.executable,
            "-c",
            CONNECT,
            uri,
            str(tmp_path / "artifacts"),
            str(tmp_path / f"ready-{number}"),
            str(go),
        ]
        processes.append(subprocess.Popen(command, stderr=subprocess.PIPE, text=True, env=env))
    try:
        deadline = time.monotonic() + 300
        while len(list(tmp_path.glob("ready-*"))) < 8 and time.monotonic() < deadline:
            assert all(process.poll() is None for process in processes), "a process ended before the start"
            time.sleep(0.05)
        go.touch()
        errors = [process.communicate(timeout=300)[1] for process in processes]
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait()
    assert [process.returncode for process in processes] == [0] * 8, "\n".join(errors)
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        assert (
            db.execute("SELECT name FROM sqlite_master WHERE name LIKE '\\_alembic\\_tmp%' ESCAPE '\\'").fetchall()
            == []
        )
        assert db.execute("SELECT COUNT(*) FROM experiments WHERE name = 'exp'").fetchone() == (1,)
    assert sorted(p.name for p in path.parent.iterdir()) == ["mlflow.db", "mlflow.db.lock"]
