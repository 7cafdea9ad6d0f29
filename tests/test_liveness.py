"""Runs whose process died are ended KILLED by whatever opens the store next;
runs that may still be alive, or that carry no liveness tags, are left alone."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time

import psutil
import pytest
from store_copies import open_store

from mnist_runner.tracking import liveness, store
from mnist_runner.tracking.liveness import TAG_HEARTBEAT, TAG_HOST, TAG_PID, TAG_PID_STARTED

# Linux never hands out a process id above 2**22 (PID_MAX_LIMIT): no process has this one.
NO_SUCH_PID = 2**22 + 1
OTHER_HOST = "another-host.invalid"


def tags(pid: int, started: float, beat: float | None = None, host: str | None = None) -> dict[str, str]:
    return {
        TAG_HOST: host or socket.gethostname(),
        TAG_PID: str(pid),
        TAG_PID_STARTED: f"{started:.2f}",
        TAG_HEARTBEAT: f"{time.time() if beat is None else beat:.0f}",
    }


def my_tags(**kwargs) -> dict[str, str]:
    return tags(os.getpid(), psutil.Process().create_time(), **kwargs)


@pytest.fixture
def runs(tmp_path, monkeypatch):
    """A client of a new store, and a function that creates a run in it."""
    temp, experiment_id = open_store(tmp_path, monkeypatch)
    client = temp.client()

    def create(run_tags: dict[str, str], status: str = "RUNNING", start_time: float | None = None) -> str:
        start_ms = None if start_time is None else int(start_time * 1000)
        run_id = client.create_run(experiment_id, start_time=start_ms, tags=run_tags).info.run_id
        if status != "RUNNING":
            client.set_terminated(run_id, status)
        return run_id

    return temp, client, create


def test_process_tags_describe_this_process():
    found = liveness.process_tags()
    assert found[TAG_HOST] == socket.gethostname()
    assert found[TAG_PID] == str(os.getpid())
    assert abs(float(found[TAG_PID_STARTED]) - psutil.Process().create_time()) < 0.01
    assert abs(float(found[TAG_HEARTBEAT]) - time.time()) < 5
    assert liveness.death_of(found, time.time(), socket.gethostname()) is None


def test_death_on_this_host_is_decided_by_the_process_not_the_heartbeat():
    now, host = time.time(), socket.gethostname()
    long_ago = now - 10 * liveness.STALE_AFTER_SECONDS
    # Alive: an old heartbeat does not matter on the same host.
    assert liveness.death_of(my_tags(beat=long_ago), now, host) is None
    gone = liveness.death_of(tags(NO_SUCH_PID, now - 100, beat=now), now, host)
    assert gone is not None and gone.startswith("process died:")
    assert f"process {NO_SUCH_PID} on {host} is gone" in gone
    # This process id, but another process (ids are reused): that one is gone.
    reused = liveness.death_of(tags(os.getpid(), psutil.Process().create_time() - 3600), now, host)
    assert reused is not None and f"process {os.getpid()}" in reused


def test_death_on_another_host_is_decided_by_the_heartbeat():
    now = time.time()
    stale = liveness.STALE_AFTER_SECONDS
    # The process id exists here (it is this process): on another host that says nothing.
    old = liveness.death_of(my_tags(host=OTHER_HOST, beat=now - stale - 120), now, socket.gethostname())
    assert old is not None and old.startswith("process died: no heartbeat")
    assert OTHER_HOST in old
    assert liveness.death_of(tags(NO_SUCH_PID, now, beat=now - stale / 2, host=OTHER_HOST), now, "here") is None


@pytest.mark.parametrize("missing", [TAG_HOST, TAG_PID, TAG_PID_STARTED, TAG_HEARTBEAT])
def test_without_liveness_tags_nothing_is_known(missing):
    given = tags(NO_SUCH_PID, 1.0, beat=1.0)
    del given[missing]
    assert liveness.death_of(given, time.time(), socket.gethostname()) is None
    assert liveness.death_of({**tags(NO_SUCH_PID, 1.0), TAG_PID: "abc"}, time.time(), socket.gethostname()) is None


def test_process_alive():
    assert liveness.process_alive(os.getpid(), psutil.Process().create_time())
    assert not liveness.process_alive(os.getpid(), psutil.Process().create_time() + 5)
    assert not liveness.process_alive(NO_SUCH_PID, time.time())


def test_reaping_ends_only_the_runs_whose_process_is_certainly_gone(runs):
    _, client, create = runs
    now = time.time()
    stale = liveness.STALE_AFTER_SECONDS
    dead = create(tags(NO_SUCH_PID, now - 600, beat=now - 5), start_time=now - 600)
    reused_pid = create(tags(os.getpid(), psutil.Process().create_time() - 3600, beat=now - 5))
    mine = create(my_tags())
    silent_elsewhere = create(my_tags(host=OTHER_HOST, beat=now - stale - 300))
    beating_elsewhere = create(tags(NO_SUCH_PID, now, beat=now - 5, host=OTHER_HOST))
    untagged = create({"some.tag": "x"})
    finished = create(tags(NO_SUCH_PID, now - 60, beat=now - 5), status="FINISHED")

    reaped = liveness.reap_dead_runs(client)

    assert sorted(reaped) == sorted([dead, reused_pid, silent_elsewhere])
    for run_id in reaped:
        run = client.get_run(run_id)
        assert run.info.status == "KILLED"
        assert run.data.tags["failure_reason"].startswith("process died: ")
        assert run.info.end_time >= run.info.start_time
    # Ended when the process was last seen, not now (and never before it started).
    assert client.get_run(dead).info.end_time == int(float(client.get_run(dead).data.tags[TAG_HEARTBEAT]) * 1000)
    assert client.get_run(silent_elsewhere).info.end_time == client.get_run(silent_elsewhere).info.start_time
    for run_id in (mine, beating_elsewhere, untagged):
        run = client.get_run(run_id)
        assert run.info.status == "RUNNING" and "failure_reason" not in run.data.tags
    done = client.get_run(finished)
    assert done.info.status == "FINISHED" and "failure_reason" not in done.data.tags
    assert liveness.reap_dead_runs(client) == []  # nothing twice


def test_opening_the_store_reaps_dead_runs(runs):
    temp, client, create = runs
    dead = create(tags(NO_SUCH_PID, time.time() - 60))
    mine = create(my_tags())
    store.open_existing(temp.uri)
    assert client.get_run(dead).info.status == "KILLED"
    assert client.get_run(mine).info.status == "RUNNING"


def heartbeat_threads(run_id: str) -> list[threading.Thread]:
    return [thread for thread in threading.enumerate() if thread.name == f"heartbeat-{run_id[:8]}"]


def test_heartbeat_refreshes_its_tag_until_stopped(runs):
    temp, client, create = runs
    run_id = create(my_tags(beat=0))
    heartbeat = liveness.Heartbeat(temp.uri, run_id, interval=0.05).start()
    try:
        deadline = time.monotonic() + 10
        while client.get_run(run_id).data.tags[TAG_HEARTBEAT] == "0" and time.monotonic() < deadline:
            time.sleep(0.02)
        assert abs(float(client.get_run(run_id).data.tags[TAG_HEARTBEAT]) - time.time()) < 5
        assert heartbeat_threads(run_id)
    finally:
        started = time.monotonic()
        heartbeat.stop()
    assert time.monotonic() - started < 3  # at once, not after stop()'s 5 s join timeout
    assert heartbeat_threads(run_id) == []
    client.set_tag(run_id, TAG_HEARTBEAT, "0")
    time.sleep(0.3)  # six intervals
    assert client.get_run(run_id).data.tags[TAG_HEARTBEAT] == "0"


@pytest.mark.slow
def test_runs_of_finished_and_zombie_children_are_reaped(runs):
    """Real processes that have ended: one waited for, one left a zombie."""
    _, client, create = runs
    finished = subprocess.Popen([sys.executable, "-c", "pass"])
    finished_started = psutil.Process(finished.pid).create_time()
    finished.wait()
    zombie = subprocess.Popen([sys.executable, "-c", "pass"])
    try:
        zombie_started = psutil.Process(zombie.pid).create_time()
        os.waitid(os.P_PID, zombie.pid, os.WEXITED | os.WNOWAIT)  # ended, not reaped
        assert psutil.Process(zombie.pid).status() == psutil.STATUS_ZOMBIE
        run_ids = [create(tags(finished.pid, finished_started)), create(tags(zombie.pid, zombie_started))]
        alive = create(my_tags())
        assert sorted(liveness.reap_dead_runs(client)) == sorted(run_ids)
    finally:
        zombie.wait()
    for run_id, pid in zip(run_ids, (finished.pid, zombie.pid)):
        run = client.get_run(run_id)
        assert run.info.status == "KILLED"
        assert f"process died: process {pid} on {socket.gethostname()} is gone" in run.data.tags["failure_reason"]
    assert client.get_run(alive).info.status == "RUNNING"
