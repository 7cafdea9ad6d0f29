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
from helpers.store_copies import open_store

from mnist_runner.tracking import liveness, run_state, store
from mnist_runner.tracking.liveness import (
    TAG_HEARTBEAT,
    TAG_HOST,
    TAG_MACHINE,
    TAG_PID,
    TAG_PID_STARTED,
    TAG_PID_TICKS,
)

# Linux never hands out a process id above 2**22 (PID_MAX_LIMIT): no process has this one.
NO_SUCH_PID = 2**22 + 1
OTHER_HOST = "another-host.invalid"


def tags(pid: int, ticks: int | None, beat: float | None = None, machine: str | None = None, host: str | None = None):
    """Liveness tags of process ``pid`` started at ``ticks`` on ``machine`` (this one by default)."""
    found = {
        TAG_HOST: host or socket.gethostname(),
        TAG_MACHINE: machine or liveness.machine(),
        TAG_PID: str(pid),
        TAG_PID_STARTED: f"{time.time() - 60:.2f}",
        TAG_HEARTBEAT: f"{time.time() if beat is None else beat:.0f}",
    }
    if ticks is not None:
        found[TAG_PID_TICKS] = str(ticks)
    return found


def my_tags(**kwargs) -> dict[str, str]:
    return tags(os.getpid(), liveness.start_ticks(os.getpid()), **kwargs)


def never_seen_change(seconds: float):
    """An ``unchanged_for`` that says every heartbeat has been the same for ``seconds``."""
    return lambda beat: seconds


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
    assert found[TAG_MACHINE] == liveness.machine() and "/" in found[TAG_MACHINE]
    assert int(found[TAG_PID_TICKS]) == liveness.start_ticks(os.getpid())
    assert abs(float(found[TAG_PID_STARTED]) - psutil.Process().create_time()) < 0.01
    assert abs(float(found[TAG_HEARTBEAT]) - time.time()) < 5
    assert liveness.death_of(found) is None


def test_death_on_this_machine_is_decided_by_the_process_not_the_heartbeat():
    long_ago = time.time() - 10 * liveness.STALE_AFTER_SECONDS
    # Alive: an old heartbeat does not matter on the same machine.
    assert liveness.death_of(my_tags(beat=long_ago), never_seen_change(10**6)) is None
    gone = liveness.death_of(tags(NO_SUCH_PID, 100))
    assert gone is not None and gone.startswith("process died:")
    assert f"process {NO_SUCH_PID} on {socket.gethostname()} is gone" in gone
    # This process id, but another process (ids are reused): that one is gone.
    reused = liveness.death_of(tags(os.getpid(), liveness.start_ticks(os.getpid()) - 1))
    assert reused is not None and f"process {os.getpid()}" in reused


@pytest.mark.parametrize("step", [-3600, -1.5, 1.5, 3600])
def test_a_step_of_this_hosts_clock_does_not_kill_a_live_run(monkeypatch, step):
    """An NTP step, a suspended laptop: the wall clock (and the start times
    psutil derives from it) moves; a process's start in ticks does not."""
    found = liveness.process_tags()
    real_time, real_create = time.time, psutil.Process.create_time
    monkeypatch.setattr(time, "time", lambda: real_time() + step)
    monkeypatch.setattr(psutil.Process, "create_time", lambda self: real_create(self) + step)
    assert liveness.death_of(found, never_seen_change(0)) is None


def test_another_machine_is_judged_by_its_heartbeat_never_by_its_clock():
    elsewhere = "0000-other-boot/4026531836"
    stale = liveness.STALE_AFTER_SECONDS
    for beat in (time.time() - 3600, time.time() + 3600, time.time() - 10 * stale):  # its clock says anything
        # The process id exists here (it is this process): on another machine that says nothing.
        run = my_tags(machine=elsewhere, host=OTHER_HOST, beat=beat)
        assert liveness.death_of(run, never_seen_change(stale / 2)) is None
        assert liveness.death_of(run) is None  # nothing seen: taken to be alive
        dead = liveness.death_of(run, never_seen_change(stale + 60))
        assert dead is not None and dead.startswith("process died: the heartbeat of process")
        assert OTHER_HOST in dead and "of this host's time" in dead
    # The same host name in another container (another pid namespace): judged as another machine.
    twin = tags(os.getpid(), 1, machine=liveness.machine().split("/")[0] + "/1", host=socket.gethostname())
    assert liveness.death_of(twin) is None


def test_the_watch_sees_a_heartbeat_unchanged_by_this_hosts_own_clock(tmp_path, monkeypatch):
    clock = [1000.0]
    monkeypatch.setattr(liveness, "own_clock", lambda: clock[0])
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"

    def look(run_id: str, beat: str) -> float:
        watch = liveness.HeartbeatWatch(uri)  # a new command each time: what it knows is in the file
        seconds = watch.unchanged_for(run_id, beat)
        watch.save()
        return seconds

    assert look("r", "5") == 0
    clock[0] += 300
    assert look("r", "5") == 300
    assert look("r", "6") == 0  # it beat: alive, watched again from now
    clock[0] += 700
    assert look("r", "6") == 700
    assert look("other", "1") == 0  # a pass that no longer sees r RUNNING forgets it
    assert look("r", "6") == 0
    assert liveness.watch_files(uri)[0].parent == tmp_path  # beside the store


@pytest.mark.parametrize("missing", [TAG_HOST, TAG_PID, TAG_HEARTBEAT])
def test_without_liveness_tags_nothing_is_known(missing):
    given = tags(NO_SUCH_PID, 1, beat=1.0)
    del given[missing]
    assert liveness.death_of(given, never_seen_change(10**6)) is None
    assert liveness.death_of({**tags(NO_SUCH_PID, 1), TAG_PID: "abc"}, never_seen_change(10**6)) is None


def test_runs_logged_before_machine_tags_are_judged_as_before():
    legacy = {k: v for k, v in my_tags().items() if k not in (TAG_MACHINE, TAG_PID_TICKS)}
    legacy[TAG_PID_STARTED] = f"{psutil.Process().create_time():.2f}"
    assert liveness.death_of(legacy) is None
    assert liveness.death_of({**legacy, TAG_PID: str(NO_SUCH_PID)}).startswith("process died")


def test_process_alive():
    assert liveness.process_alive(os.getpid(), psutil.Process().create_time())
    assert not liveness.process_alive(os.getpid(), psutil.Process().create_time() + 5)
    assert not liveness.process_alive(NO_SUCH_PID, time.time())
    assert liveness.same_process(os.getpid(), liveness.start_ticks(os.getpid()))
    assert not liveness.same_process(NO_SUCH_PID, 1)


def test_reaping_ends_only_the_runs_whose_process_is_certainly_gone(runs, monkeypatch):
    _, client, create = runs
    clock = [5000.0]
    monkeypatch.setattr(liveness, "own_clock", lambda: clock[0])
    now = time.time()
    elsewhere = "0000-other-boot/1"
    dead = create(tags(NO_SUCH_PID, 600, beat=now - 5), start_time=now - 600)
    reused_pid = create(tags(os.getpid(), liveness.start_ticks(os.getpid()) - 100, beat=now - 5))
    mine = create(my_tags())
    silent_elsewhere = create(tags(NO_SUCH_PID, 1, beat=now + 3600, machine=elsewhere, host=OTHER_HOST))
    beating_elsewhere = create(tags(NO_SUCH_PID, 1, beat=now - 3600, machine=elsewhere, host=OTHER_HOST))
    untagged = create({"some.tag": "x"})
    finished = create(tags(NO_SUCH_PID, 60, beat=now - 5), status="FINISHED")

    first = liveness.reap_dead_runs(client)  # this host sees the other machine's runs for the first time
    clock[0] += liveness.STALE_AFTER_SECONDS + 1
    client.set_tag(beating_elsewhere, TAG_HEARTBEAT, f"{now - 3500:.0f}")  # it beat meanwhile
    later = liveness.reap_dead_runs(client)

    assert sorted(first) == sorted([dead, reused_pid]) and later == [silent_elsewhere]
    for run_id in first + later:
        run = client.get_run(run_id)
        assert run.info.status == "KILLED"
        assert run.data.tags["failure_reason"].startswith("process died: ")
        assert run.info.end_time >= run.info.start_time
    # Ended when the process was last seen (by this host's clock), not now and never before it started.
    assert client.get_run(dead).info.end_time == int(float(client.get_run(dead).data.tags[TAG_HEARTBEAT]) * 1000)
    assert client.get_run(silent_elsewhere).info.end_time <= int(now * 1000) + 60_000
    for run_id in (mine, beating_elsewhere, untagged):
        run = client.get_run(run_id)
        assert run.info.status == "RUNNING" and "failure_reason" not in run.data.tags
    done = client.get_run(finished)
    assert done.info.status == "FINISHED" and "failure_reason" not in done.data.tags
    assert liveness.reap_dead_runs(client) == []  # nothing twice


RACES = 200


def test_a_run_that_finishes_while_the_reaper_decides_stays_finished(runs, monkeypatch):
    """The race forced: between the reaper's search for RUNNING runs and its
    write, the run ends FINISHED (its process exits right after)."""
    _, client, create = runs
    run_ids = [create({**tags(NO_SUCH_PID, 1), "race": str(number)}) for number in range(RACES)]
    decide = liveness.death_of

    def finishes_meanwhile(found, unchanged_for=None):
        reason = decide(found, unchanged_for)  # dead, as the search saw it
        client.set_terminated(run_ids[int(found["race"])], "FINISHED")  # but it ended before the write
        return reason

    monkeypatch.setattr(liveness, "death_of", finishes_meanwhile)

    assert liveness.reap_dead_runs(client) == []

    runs_now = [client.get_run(run_id) for run_id in run_ids]
    assert [run.info.status for run in runs_now] == ["FINISHED"] * RACES
    assert not [run for run in runs_now if "failure_reason" in run.data.tags]


def test_a_run_taken_for_dead_that_is_alive_comes_back(runs):
    temp, client, create = runs
    run_id = create(my_tags())
    client.set_tag(run_id, "failure_reason", "process died: the heartbeat of process 1 did not change")
    client.set_terminated(run_id, "KILLED")  # as a reaper on another machine would
    heartbeat = liveness.Heartbeat(temp.uri, run_id, interval=0.05).start()
    try:
        deadline = time.monotonic() + 10
        while client.get_run(run_id).info.status != "RUNNING" and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        heartbeat.stop()
    run = client.get_run(run_id)
    assert run.info.status == "RUNNING" and "failure_reason" not in run.data.tags
    # Its own end is the truth: a stop signal's KILLED is not undone.
    client.set_tag(run_id, "failure_reason", "interrupted")
    client.set_terminated(run_id, "KILLED")
    assert not run_state.revive_if_reaped(client, run_id)


def test_opening_the_store_reaps_dead_runs(runs):
    temp, client, create = runs
    dead = create(tags(NO_SUCH_PID, 60))
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
    finished_started = liveness.start_ticks(finished.pid)
    finished.wait()
    zombie = subprocess.Popen([sys.executable, "-c", "pass"])
    try:
        zombie_started = liveness.start_ticks(zombie.pid)
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
