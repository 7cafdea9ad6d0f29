"""Liveness done for real: a real run's heartbeat beats in the store, and a
run on "another host" (its own host name and process-id namespace, made with
``unshare``) whose clock is an hour behind or ahead (``faketime``) trains to
FINISHED while this host opens the store every second, and is ended KILLED
within the documented limit once it is killed with ``kill -9``. The runs
that must stay alive for a while pause after each epoch
(``helpers.hooks.slow_epochs``): alive as long, without training that long.

This host opens the store in the test's own process (``mnist-runs list``'s
``main``): the same reaper as any command's, without an interpreter's start
per look, so that it looks every second even on 2 busy cores."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest
from helpers import skip_or_fail
from helpers.hooks import slow_epochs
from helpers.store_copies import migrated_store

from mnist_runner.tracking import liveness, runs_cli

pytestmark = pytest.mark.e2e

HEARTBEAT = "1"
STALE = 15  # seconds of this host's clock without a change of heartbeat: dead
ENV = {"MNIST_RUNNER_HEARTBEAT_SECONDS": HEARTBEAT, "MNIST_RUNNER_STALE_AFTER_SECONDS": str(STALE)}
QUICK = ("data=digits", "tracking.log_model=false")


@pytest.fixture(autouse=True)
def stale_after(monkeypatch):
    """This host's reaper (in the test's process) with the runs' limit."""
    monkeypatch.setattr(liveness, "STALE_AFTER_SECONDS", float(STALE))


def test_a_real_runs_heartbeat_beats_in_the_store(tmp_store):
    process = tmp_store.start_py(*QUICK, "trainer.epochs=200", env=ENV, stdout=subprocess.DEVNULL)
    beats = set()
    try:
        deadline = time.monotonic() + 240
        while process.poll() is None and time.monotonic() < deadline and len(beats) < 3:
            time.sleep(0.3)
            run = next(iter(tmp_store.runs()), None)  # none until the run has started
            if run is not None and run.info.status == "RUNNING":
                beats.add(run.data.tags[liveness.TAG_HEARTBEAT])
        process.send_signal(signal.SIGTERM)  # seen beating: no need to train on
    finally:
        process.wait(timeout=240)
    assert len(beats) >= 3, f"the heartbeat did not beat while the run trained: {beats}"
    assert process.returncode == 143, "the run ended before it was stopped"


def elsewhere(store, shift: str, *overrides: str, env: dict | None = None) -> subprocess.Popen:
    """``python run.py`` as on another host: its own host name and process-id
    namespace, and a clock ``shift`` off (faketime's syntax: ``-1h``); ``env``
    on top of the runs' liveness settings."""
    libraries = sorted(Path("/usr/lib").glob("*/faketime/libfaketime.so.1"))
    if shutil.which("unshare") is None or not libraries:
        skip_or_fail("unshare or libfaketime is missing (make install-e2e installs faketime)")
    # libfaketime preloaded, not through the faketime wrapper: the wrapper names a
    # semaphore after its pid, which is 1 in every new pid namespace, and one left
    # by a killed namespace makes the next start fail. Only the wall clock is off,
    # as on a host whose clock is wrong: shifting the monotonic clock too stalls timed waits.
    clock = {"LD_PRELOAD": str(libraries[0]), "FAKETIME": shift, "FAKETIME_DONT_FAKE_MONOTONIC": "1"}
    script = 'hostname other-host && exec env "$@"'
    on_another_host = [
        "unshare",
        "--uts",
        "--pid",
        "--fork",
        "--mount-proc",
        "sh",
        "-c",
        script,
        "sh",
        *(f"{key}={value}" for key, value in clock.items()),
    ]
    return store.start_py(
        *QUICK, *overrides, env={**ENV, **(env or {})}, wrapper=tuple(on_another_host), start_new_session=True
    )


def open_the_store(store) -> None:
    """What any command does: here ``mnist-runs list``, which reaps dead runs."""
    assert runs_cli.main(["list", "--uri", store.uri, "--experiment", "digits"]) == 0


def wait_until_training(store, process) -> None:
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and process.poll() is None:
        run = next(iter(store.runs()), None)
        if run is not None and store.client().get_metric_history(run.info.run_id, "loss"):
            return
        time.sleep(0.5)
    output = process.stdout.read() if process.poll() is not None else ""
    pytest.fail(f"the run on the other host never trained: {output[-3000:]}")


def test_runs_on_hosts_with_other_clocks_are_not_taken_for_dead(tmp_store):
    """Two runs at once, one on a host whose clock is an hour behind, one an
    hour ahead, each a separate store's: this host watches both."""
    pause = slow_epochs(tmp_store.root / "slow", seconds=1)
    shifts = ("-1h", "+1h")
    stores = {shift: migrated_store(tmp_store.root / shift) for shift in shifts}
    processes = {}
    try:
        for shift, store in stores.items():
            processes[shift] = elsewhere(store, shift, "trainer.epochs=25", env=pause)
        for shift, store in stores.items():
            wait_until_training(store, processes[shift])
        checks = {shift: [] for shift in shifts}
        watched_from = time.monotonic()
        watched = {}
        while len(watched) < len(shifts):
            for shift, store in stores.items():
                if shift in watched:
                    continue
                if processes[shift].poll() is not None:
                    watched[shift] = time.monotonic() - watched_from
                    continue
                open_the_store(store)
                checks[shift].append(store.only_run().info.status)
            time.sleep(1)
        outputs = {shift: process.stdout.read() for shift, process in processes.items()}
    finally:
        for process in processes.values():
            if process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
    for shift, store in stores.items():
        assert processes[shift].returncode == 0, outputs[shift][-3000:]
        run = store.only_run()
        assert run.data.tags[liveness.TAG_HOST] == "other-host"
        assert run.data.tags[liveness.TAG_MACHINE] != liveness.machine()  # judged as another machine
        assert len(checks[shift]) >= 3 and set(checks[shift]) <= {"RUNNING", "FINISHED"}, checks
        # Watched for longer than the limit: a reaper that took an unchanged
        # heartbeat, or the other host's clock, for a death would have ended it.
        assert watched[shift] > STALE + float(HEARTBEAT), f"{shift}: watched for {watched[shift]:.0f} s only"
        assert run.info.status == "FINISHED" and "failure_reason" not in run.data.tags


def test_a_killed_run_on_another_host_is_ended_within_the_limit(tmp_store):
    process = elsewhere(tmp_store, "-1h", "trainer.epochs=400")
    try:
        wait_until_training(tmp_store, process)
        open_the_store(tmp_store)  # this host watches its heartbeat
        assert tmp_store.only_run().info.status == "RUNNING"
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)  # the whole namespace: kill -9
        process.wait()
    killed_at = time.monotonic()
    while tmp_store.only_run().info.status == "RUNNING" and time.monotonic() - killed_at < STALE + 60:
        open_the_store(tmp_store)
        time.sleep(1)
    waited = time.monotonic() - killed_at
    run = tmp_store.only_run()
    assert run.info.status == "KILLED", f"still {run.info.status} after {waited:.0f} s"
    assert run.data.tags["failure_reason"].startswith("process died: the heartbeat of process")
    # The limit: STALE seconds of unchanged heartbeat, plus the beat interval and one check.
    assert waited <= STALE + float(HEARTBEAT) + 15, waited
