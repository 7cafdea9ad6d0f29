"""A run always ends with the status that says what happened, and a store
that stops accepting writes costs the run's final state nothing: it is kept
locally, written later, and the user gets one line."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import threading

import mlflow
import pytest
from helpers.store_copies import open_store
from mlflow.exceptions import MlflowException
from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore
from sqlalchemy.exc import OperationalError

from mnist_runner import signals
from mnist_runner.errors import EXIT_FAILED, RunFailed, RunPruned
from mnist_runner.signals import Interrupted, JobCancelled
from mnist_runner.tracking import liveness, pending, runs, store
from mnist_runner.tracking.store import StoreWriteError

DISK_FULL = "(sqlite3.OperationalError) database or disk is full\n[SQL: UPDATE runs SET status=?]"


@pytest.mark.parametrize(
    "error, status, reason",
    [
        (KeyboardInterrupt(), "KILLED", "interrupted"),
        (Interrupted(), "KILLED", "interrupted"),
        (JobCancelled("cancelled by SLURM"), "KILLED", "JobCancelled: cancelled by SLURM"),
        (RunPruned("trial 3 pruned at epoch 2"), "KILLED", "RunPruned: trial 3 pruned at epoch 2"),
        (RunFailed("the loss diverged"), "FAILED", "RunFailed: the loss diverged"),
        (ValueError("boom"), "FAILED", "ValueError: boom"),
        (MlflowException(DISK_FULL), "FAILED", "the tracking store failed: the disk is full"),
        (
            OperationalError("INSERT", {}, Exception("database is locked")),
            "FAILED",
            "the tracking store failed: the store is locked by another process (SQLite waited for it, then gave up)",
        ),
    ],
)
def test_final_state(error, status, reason):
    assert runs.final_state(error) == (status, reason)


def test_a_long_reason_is_cut_to_what_a_tag_holds():
    status, reason = runs.final_state(ValueError("x" * 10_000))
    assert status == "FAILED" and len(reason) == 5000 and reason.startswith("ValueError: xxx")


class Store:
    """Which writes of the SQLite store fail, as on a full disk."""

    def __init__(self, monkeypatch):
        self.full = False
        self.tag_failures = 0  # then only this many tag writes fail
        for name in ("set_tag", "update_run_info"):
            monkeypatch.setattr(SqlAlchemyStore, name, self._guard(getattr(SqlAlchemyStore, name)))

    def _guard(self, write):
        def guarded(store_self, *args, **kwargs):
            if self.full or (write.__name__ == "set_tag" and self.tag_failures > 0):
                self.tag_failures -= 1
                raise MlflowException(DISK_FULL)
            return write(store_self, *args, **kwargs)

        return guarded


@pytest.fixture
def run(tmp_path, monkeypatch):
    """A run started as the pipeline starts one, on a new store; the disk
    switch; and the folder where final states are kept."""
    temp, experiment_id = open_store(tmp_path / "store", monkeypatch)
    kept = tmp_path / "pending"
    monkeypatch.setattr(pending, "folders", lambda: [kept])
    disk = Store(monkeypatch)
    active = mlflow.start_run(experiment_id=experiment_id, tags=liveness.process_tags())
    try:
        yield temp, active.info.run_id, disk, kept, experiment_id
    finally:
        disk.full, disk.tag_failures = False, 0
        while mlflow.active_run() is not None:  # a test that failed half-way
            mlflow.end_run("KILLED")


def kept_record(kept) -> dict:
    [path] = list(kept.iterdir())
    return json.loads(path.read_text())


def test_a_finished_run_whose_end_cannot_be_written(run):
    temp, run_id, disk, kept, _ = run
    disk.full = True
    with pytest.raises(StoreWriteError) as raised:
        runs.close(temp.uri, run_id, "FINISHED", None, None)
    error = raised.value
    assert error.exit_code == EXIT_FAILED == 1
    message = str(error)
    assert message.startswith(f"tracking.uri={temp.uri}: the store stopped accepting writes (the disk is full)")
    assert "\n" not in message and "(FINISHED)" in message and str(kept) in message
    assert mlflow.active_run() is None
    assert kept_record(kept)["status"] == "FINISHED"
    client = temp.client()
    assert client.get_run(run_id).info.status == "RUNNING"

    disk.full = False
    store.open_existing(temp.uri)  # the next command
    assert client.get_run(run_id).info.status == "FINISHED"
    assert list(kept.iterdir()) == []


def test_a_run_that_failed_on_the_store(run):
    temp, run_id, disk, kept, _ = run
    disk.full = True
    cause = MlflowException(DISK_FULL)
    status, reason = runs.final_state(cause)
    with pytest.raises(StoreWriteError, match=r"\(the disk is full\).*\(FAILED\) is kept in"):
        runs.close(temp.uri, run_id, status, reason, cause)
    assert kept_record(kept)["reason"] == "the tracking store failed: the disk is full"

    disk.full = False
    pending.flush(temp.client(), temp.uri)
    ended = temp.client().get_run(run_id)
    assert ended.info.status == "FAILED"
    assert ended.data.tags["failure_reason"] == "the tracking store failed: the disk is full"


def test_the_runs_own_error_is_what_the_user_sees(run, caplog):
    temp, run_id, disk, kept, _ = run
    disk.full = True
    cause = ValueError("boom")
    status, reason = runs.final_state(cause)
    with caplog.at_level(logging.ERROR, logger=runs.__name__):
        runs.close(temp.uri, run_id, status, reason, cause)  # no StoreWriteError: the ValueError goes on
    assert "the store stopped accepting writes (the disk is full)" in caplog.text
    assert (kept_record(kept)["status"], kept_record(kept)["reason"]) == ("FAILED", "ValueError: boom")


def test_a_store_that_failed_and_recovered(run):
    temp, run_id, _, kept, _ = run
    cause = MlflowException(DISK_FULL)
    status, reason = runs.final_state(cause)
    with pytest.raises(StoreWriteError, match=r"\(the disk is full\); the run is FAILED$"):
        runs.close(temp.uri, run_id, status, reason, cause)
    ended = temp.client().get_run(run_id)
    assert (ended.info.status, ended.data.tags["failure_reason"]) == (status, reason)
    assert not kept.exists() or list(kept.iterdir()) == []


def test_the_reason_is_written_when_only_its_tag_failed(run):
    temp, run_id, disk, kept, _ = run
    disk.tag_failures = 1
    runs.close(temp.uri, run_id, "FAILED", "ValueError: boom", ValueError("boom"))
    ended = temp.client().get_run(run_id)
    assert (ended.info.status, ended.data.tags.get("failure_reason")) == ("FAILED", "ValueError: boom")
    assert not kept.exists()


def heartbeats() -> list[threading.Thread]:
    return [thread for thread in threading.enumerate() if thread.name.startswith("heartbeat-")]


@pytest.mark.parametrize(
    "error, status, reason",
    [
        (None, "FINISHED", None),
        (ValueError("boom"), "FAILED", "ValueError: boom"),
        (KeyboardInterrupt(), "KILLED", "interrupted"),
    ],
)
def test_tracked_run_ends_with_what_happened(run, error, status, reason):
    temp, _, _, _, experiment_id = run
    mlflow.end_run()  # the fixture's own run
    before = heartbeats()
    with pytest.raises(type(error)) if error else contextlib.nullcontext():
        with runs.tracked_run(experiment_id, "a-run", {"purpose": "test"}) as tracked:
            assert liveness.death_of(tracked.data.tags, lambda beat: 10**9) is None
            if error:
                raise error
    ended = temp.client().get_run(tracked.info.run_id)
    assert ended.info.status == status
    assert ended.data.tags.get("failure_reason") == reason
    assert ended.data.tags["purpose"] == "test"
    assert ended.data.tags[liveness.TAG_PID] == str(os.getpid())
    assert heartbeats() == before  # its heartbeat stopped


def test_tracked_run_on_a_disk_that_fills_up(run):
    temp, _, disk, kept, experiment_id = run
    mlflow.end_run()
    with pytest.raises(StoreWriteError, match=r"\(FINISHED\) is kept in"):
        with runs.tracked_run(experiment_id, "a-run", {}) as tracked:
            disk.full = True
    assert mlflow.active_run() is None
    assert kept_record(kept)["run_id"] == tracked.info.run_id


def test_a_run_finished_in_a_thread_while_the_next_one_runs(run):
    temp, _, _, _, experiment_id = run
    mlflow.end_run()
    before = heartbeats()
    go, written, results = threading.Event(), threading.Event(), []

    def work(pace):
        mlflow.log_metric("test_accuracy", 0.9)  # into the run handed over, from its thread
        pace.model_done()
        pace.wait_to_write()  # until the next job trains
        written.set()
        go.wait(60)
        return {"test_accuracy": 0.9}

    with runs.tracked_run(experiment_id, "first", {}) as first:
        first.finish_in_background(work, results.append)
    runs.wait_for_finishing(released_only=True)
    client = temp.client()
    assert client.get_run(first.info.run_id).info.status == "RUNNING"  # still being finished
    assert len(heartbeats()) == len(before) + 1  # its heartbeat beats on
    assert mlflow.active_run() is None and results == []
    with runs.tracked_run(experiment_id, "second", {}) as second:  # the next job, meanwhile
        assert not written.wait(0.5)  # its set-up is not competed with
        runs.next_job_trains()
        assert written.wait(10)
        mlflow.log_metric("loss", 1.0)
    assert client.get_run(first.info.run_id).info.status == "RUNNING"

    go.set()
    runs.wait_for_finishing()
    ended, other = client.get_run(first.info.run_id), client.get_run(second.info.run_id)
    assert ended.info.status == "FINISHED" and ended.data.metrics == {"test_accuracy": 0.9}
    assert other.info.status == "FINISHED" and other.data.metrics == {"loss": 1.0}
    assert results == [{"test_accuracy": 0.9}]  # what follows a FINISHED run
    assert heartbeats() == before


def test_a_run_that_fails_while_finished_in_a_thread(run, caplog):
    temp, _, _, _, experiment_id = run
    mlflow.end_run()
    results = []

    def work(pace):
        raise OSError(28, "No space left on device")

    with runs.tracked_run(experiment_id, "first", {}) as first:
        first.finish_in_background(work, results.append)
    runs.wait_for_finishing(released_only=True)  # released, though the work never said so
    runs.wait_for_finishing()
    ended = temp.client().get_run(first.info.run_id)
    assert ended.info.status == "FAILED"
    assert ended.data.tags["failure_reason"] == "OSError: [Errno 28] No space left on device"
    assert results == []
    assert f"run {first.info.run_id} failed while its results were recorded" in caplog.text


def test_a_stop_noted_during_training_ends_the_run_before_it_is_handed_over(run, monkeypatch):
    temp, _, _, _, experiment_id = run
    mlflow.end_run()
    monkeypatch.setattr(signals, "_pending_stop", None)
    with pytest.raises(Interrupted):
        with runs.tracked_run(experiment_id, "first", {}) as first:
            with signals.stops_deferred():
                signals.raise_interrupted(signal.SIGINT, None)  # noted, as during training
            first.finish_in_background(lambda pace: None, lambda result: None)
    runs.wait_for_finishing()
    ended = temp.client().get_run(first.info.run_id)
    assert ended.info.status == "KILLED" and ended.data.tags["failure_reason"] == "interrupted"
