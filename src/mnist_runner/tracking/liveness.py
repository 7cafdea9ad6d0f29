"""Knowing when a run's process has died, so that no run stays RUNNING.

A process that is killed (``kill -9``, the OOM killer, a lost node, a power
cut) cannot close its run. So every run, and every sweep's parent run,
records where its process runs, as tags: the host, the process id, the
process's start time (a reused process id is then not mistaken for it) and a
heartbeat, refreshed every ``HEARTBEAT_SECONDS`` by a background thread.

Whatever opens the store next (a run, a sweep, ``mnist-compare``, the UI,
``resume=``, predict, the registry: all go through ``tracking.store``) ends
the RUNNING runs whose process is certainly gone, KILLED, with the reason in
``failure_reason``:

- a run of this host whose process no longer exists (same id and start time);
- a run of another host whose heartbeat is older than ``STALE_AFTER_SECONDS``.

Runs without these tags (logged by something else) are left alone.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from datetime import datetime, timezone

import psutil

log = logging.getLogger(__name__)

TAG_HOST = "runner.host"
TAG_PID = "runner.pid"
TAG_PID_STARTED = "runner.pid_started"
TAG_HEARTBEAT = "runner.heartbeat"
# Overridable from the environment, e.g. for tests that cannot wait minutes.
HEARTBEAT_SECONDS = float(os.environ.get("MNIST_RUNNER_HEARTBEAT_SECONDS", 30))
# 20 missed heartbeats: a process that is only slow (a long evaluation, a
# loaded machine, a store that was locked for a while) is not taken for dead.
STALE_AFTER_SECONDS = float(os.environ.get("MNIST_RUNNER_STALE_AFTER_SECONDS", 600))


def process_tags() -> dict[str, str]:
    """The tags that say where this process runs, with a first heartbeat."""
    me = psutil.Process()
    return {
        TAG_HOST: socket.gethostname(),
        TAG_PID: str(me.pid),
        TAG_PID_STARTED: f"{me.create_time():.2f}",
        TAG_HEARTBEAT: f"{time.time():.0f}",
    }


def death_of(tags: dict[str, str], now: float, host: str) -> str | None:
    """Why the process of a RUNNING run with these tags is certainly gone, or
    None when it may be alive (or the run has no liveness tags)."""
    try:
        pid, started, beat = int(tags[TAG_PID]), float(tags[TAG_PID_STARTED]), float(tags[TAG_HEARTBEAT])
        run_host = tags[TAG_HOST]
    except (KeyError, ValueError):
        return None
    last_seen = datetime.fromtimestamp(beat, timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
    if run_host == host:
        if not process_alive(pid, started):
            return f"process died: process {pid} on {host} is gone (last heartbeat {last_seen})"
        return None
    if now - beat > STALE_AFTER_SECONDS:
        return (
            f"process died: no heartbeat from process {pid} on {run_host} for {(now - beat) / 60:.0f} min "
            f"(last {last_seen})"
        )
    return None


def process_alive(pid: int, started: float) -> bool:
    """Whether process ``pid`` exists and is the one that started at ``started``."""
    try:
        process = psutil.Process(pid)
        return abs(process.create_time() - started) < 1.0 and process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False
    except psutil.AccessDenied:  # it exists, and may be the run's: not certainly gone
        return True


def reap_dead_runs(client, experiment_ids: list[str] | None = None, now: float | None = None) -> list[str]:
    """End every RUNNING run whose process is certainly gone KILLED; the ids of those runs."""
    from mlflow.entities import ViewType

    now = time.time() if now is None else now
    if experiment_ids is None:
        experiment_ids = [e.experiment_id for e in client.search_experiments(view_type=ViewType.ACTIVE_ONLY)]
    if not experiment_ids:
        return []
    running = client.search_runs(experiment_ids, "attributes.status = 'RUNNING'", max_results=10_000)
    host = socket.gethostname()
    reaped = []
    for run in running:
        reason = death_of(run.data.tags, now, host)
        if reason is None:
            continue
        end_ms = int(float(run.data.tags[TAG_HEARTBEAT]) * 1000)
        client.set_tag(run.info.run_id, "failure_reason", reason)
        client.set_terminated(run.info.run_id, "KILLED", end_time=max(end_ms, run.info.start_time))
        log.warning("run %s (%s) was left RUNNING: %s; marked KILLED", run.info.run_id, run.info.run_name, reason)
        reaped.append(run.info.run_id)
    return reaped


class Heartbeat:
    """Refreshes a run's heartbeat tag every ``interval`` seconds, in a daemon
    thread, until ``stop()``. A store that cannot be written for a while only
    delays the heartbeat: the run itself reports store errors."""

    def __init__(self, tracking_uri: str, run_id: str, interval: float = HEARTBEAT_SECONDS):
        self.tracking_uri, self.run_id, self.interval = tracking_uri, run_id, interval
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._beat, name=f"heartbeat-{run_id[:8]}", daemon=True)

    def start(self) -> Heartbeat:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopped.set()
        self._thread.join(timeout=5)

    def _beat(self) -> None:
        from mlflow.tracking import MlflowClient

        client = MlflowClient(self.tracking_uri)
        while not self._stopped.wait(self.interval):
            try:
                client.set_tag(self.run_id, TAG_HEARTBEAT, f"{time.time():.0f}")
            except Exception as error:  # the run reports store errors itself
                log.debug("heartbeat of run %s not written: %s", self.run_id, error)
