"""Knowing when a run's process has died, so that no run stays RUNNING, and
never taking a live run for a dead one.

A process that is killed (``kill -9``, the OOM killer, a lost node, a power
cut) cannot close its run. So every run, and every sweep's parent run,
records where its process runs, as tags: the host, the machine (the kernel's
boot id and the process-id namespace: where a process id names one process),
the process id, the process's start in clock ticks since boot (a reused
process id is then not mistaken for it, whatever the wall clock does) and a
heartbeat, refreshed every ``HEARTBEAT_SECONDS`` by a background thread.

Whatever opens the store next (a run, a sweep, ``mnist-compare``, the UI,
``resume=``, predict, the registry: all go through ``tracking.store``) ends
the RUNNING runs whose process is certainly gone, KILLED, with the reason in
``failure_reason``, and only while they are still RUNNING (``run_state``):

- a run of this machine whose process no longer exists (same id and start);
- a run of another machine (another host, or another container) whose
  heartbeat this host has seen unchanged for ``STALE_AFTER_SECONDS`` of its
  own clock (``HeartbeatWatch``). Two hosts' clocks are never compared: the
  heartbeat is only looked at for whether it changed.

A run taken for dead whose process is alive after all (a host cut off from
the store for a while, a suspended job) comes back: its heartbeat sets it
RUNNING again, and a FINISHED end removes the reaper's reason.
Runs without these tags (logged by something else) are left alone.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import socket
import tempfile
import threading
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

import psutil

from mnist_runner.paths import RUNS_DIR

log = logging.getLogger(__name__)

TAG_HOST = "runner.host"
TAG_MACHINE = "runner.machine"  # boot id / pid namespace: where TAG_PID names one process
TAG_PID = "runner.pid"
TAG_PID_STARTED = "runner.pid_started"  # wall-clock start, shown to people (and runs logged before ticks)
TAG_PID_TICKS = "runner.pid_ticks"  # start in clock ticks since boot: not moved by clock steps
TAG_HEARTBEAT = "runner.heartbeat"
REAPED = "process died"  # how the reaper's failure_reason starts
# Overridable from the environment, e.g. for tests that cannot wait minutes.
HEARTBEAT_SECONDS = float(os.environ.get("MNIST_RUNNER_HEARTBEAT_SECONDS", 30))
# 20 missed heartbeats: a process that is only slow (a long evaluation, a
# loaded machine, a store that was locked for a while) is not taken for dead.
STALE_AFTER_SECONDS = float(os.environ.get("MNIST_RUNNER_STALE_AFTER_SECONDS", 600))


def machine() -> str:
    """Where a process id names one process: the kernel's boot id and this
    process's pid namespace (two containers of one kernel can have the same
    host name and process ids); the host name where neither can be read."""
    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
        namespace = os.readlink("/proc/self/ns/pid").strip("pid:[]")
        return f"{boot}/{namespace}"
    except OSError:
        return f"host:{socket.gethostname()}"


def start_ticks(pid: int) -> int | None:
    """When process ``pid`` started, in clock ticks since boot (Linux'
    ``/proc/<pid>/stat``, field 22); None where it cannot be read."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses: count from its end.
    return int(stat.rsplit(")", 1)[1].split()[19])


def process_tags() -> dict[str, str]:
    """The tags that say where this process runs, with a first heartbeat."""
    me = psutil.Process()
    tags = {
        TAG_HOST: socket.gethostname(),
        TAG_MACHINE: machine(),
        TAG_PID: str(me.pid),
        TAG_PID_STARTED: f"{me.create_time():.2f}",
        TAG_HEARTBEAT: f"{time.time():.0f}",
    }
    ticks = start_ticks(me.pid)
    if ticks is not None:
        tags[TAG_PID_TICKS] = str(ticks)
    return tags


def death_of(tags: dict[str, str], unchanged_for: Callable[[str], float] | None = None) -> str | None:
    """Why the process of a RUNNING run with these tags is certainly gone, or
    None when it may be alive (or the run has no liveness tags).

    ``unchanged_for(heartbeat)``: for how many seconds of this host's own
    clock that heartbeat has been seen unchanged (``HeartbeatWatch``); the
    only way to judge a run of another machine. Without it, such a run is
    taken to be alive."""
    try:
        pid, beat, host = int(tags[TAG_PID]), tags[TAG_HEARTBEAT], tags[TAG_HOST]
    except (KeyError, ValueError):
        return None
    where = tags.get(TAG_MACHINE)
    if where == machine() and TAG_PID_TICKS in tags:
        if same_process(pid, int(tags[TAG_PID_TICKS])):
            return None
        return f"{REAPED}: process {pid} on {host} is gone (last heartbeat {shown_time(beat)})"
    if where is None and host == socket.gethostname() and TAG_PID_STARTED in tags:
        # Logged before runs recorded their machine: the wall-clock start, within a second.
        if process_alive(pid, float(tags[TAG_PID_STARTED])):
            return None
        return f"{REAPED}: process {pid} on {host} is gone (last heartbeat {shown_time(beat)})"
    if unchanged_for is None:
        return None
    seconds = unchanged_for(beat)
    if seconds <= STALE_AFTER_SECONDS:
        return None
    return (
        f"{REAPED}: the heartbeat of process {pid} on {host} did not change for {seconds / 60:.0f} min "
        f"of this host's time (last written {shown_time(beat)}, by that host's clock)"
    )


def shown_time(beat: str) -> str:
    try:
        return datetime.fromtimestamp(float(beat), timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
    except (ValueError, OverflowError, OSError):
        return beat


def same_process(pid: int, ticks: int) -> bool:
    """Whether process ``pid`` exists, is not a zombie, and started at ``ticks``."""
    if start_ticks(pid) != ticks:
        return False
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False
    except psutil.AccessDenied:
        return True


def process_alive(pid: int, started: float) -> bool:
    """Whether process ``pid`` exists and is the one that started at ``started``
    (a wall-clock time: only for runs logged before their start ticks were)."""
    try:
        process = psutil.Process(pid)
        return abs(process.create_time() - started) < 1.0 and process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False
    except psutil.AccessDenied:  # it exists, and may be the run's: not certainly gone
        return True


def own_clock() -> float:
    """Seconds on this host's own clock since boot: comparable between its
    processes, not moved by a change of the wall clock, counting suspended time."""
    return time.clock_gettime(time.CLOCK_BOOTTIME) if hasattr(time, "CLOCK_BOOTTIME") else time.monotonic()


class HeartbeatWatch:
    """What this host has seen of other machines' heartbeats, per store: each
    RUNNING run's last heartbeat and since when (its own clock) it has been
    the same. Kept in a small JSON file (``runs/liveness/``), so that commands
    that open the store minutes apart see the same history. A lost update
    (two commands at once) restarts a run's watch: it delays a verdict,
    never makes a wrong one."""

    def __init__(self, uri: str):
        self.paths = watch_files(uri)
        self.boot = machine().split("/")[0]
        self.seen: dict[str, dict] = {}
        for path in self.paths:
            try:
                self.seen = json.loads(path.read_text())
                break
            except (OSError, ValueError):
                continue
        self.now = own_clock()
        self.kept: dict[str, dict] = {}

    def unchanged_for(self, run_id: str, beat: str) -> float:
        entry = self.seen.get(run_id)
        if not entry or entry.get("beat") != beat or entry.get("boot") != self.boot:
            entry = {"beat": beat, "boot": self.boot, "since": self.now, "wall": time.time()}
        self.kept[run_id] = entry
        return self.now - entry["since"]

    def first_seen_ms(self, run_id: str) -> int:
        """When (this host's wall clock) the run's last heartbeat was first seen."""
        return int(self.kept.get(run_id, {}).get("wall", time.time()) * 1000)

    def save(self) -> None:
        """Keep the runs seen now (RUNNING ones of other machines), forget the
        rest; no file for a store where there is nothing to keep."""
        if not self.kept and not self.seen:
            return
        for path in self.paths:
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                partial = path.with_name(f"{path.name}.{os.getpid()}.part")
                partial.write_text(json.dumps(self.kept))
                os.replace(partial, path)
                return
            except OSError:
                continue


def watch_files(uri: str) -> list[Path]:
    """Where this host keeps what it has seen of a store's runs: beside a
    SQLite store's file, else under ``runs/liveness/``; the system's temporary
    folder where those cannot be written."""
    key = hashlib.sha256(uri.encode()).hexdigest()[:16]
    files = [
        RUNS_DIR / "liveness" / f"{key}.json",
        Path(tempfile.gettempdir()) / "mnist-runner-liveness" / f"{key}.json",
    ]
    if uri.startswith("sqlite:///"):
        database = Path(uri.removeprefix("sqlite:///"))
        files.insert(0, database.with_name(f"{database.name}.liveness-{socket.gethostname()}.json"))
    return files


def reap_dead_runs(client, experiment_ids: list[str] | None = None) -> list[str]:
    """End every RUNNING run whose process is certainly gone KILLED, if it
    is still RUNNING when that is written; the ids of those runs."""
    from mlflow.entities import ViewType

    from mnist_runner.tracking import run_state

    if experiment_ids is None:
        experiment_ids = [e.experiment_id for e in client.search_experiments(view_type=ViewType.ACTIVE_ONLY)]
    if not experiment_ids:
        return []
    running = client.search_runs(experiment_ids, "attributes.status = 'RUNNING'", max_results=10_000)
    watch = HeartbeatWatch(client.tracking_uri)
    reaped = []
    for run in running:
        run_id = run.info.run_id
        reason = death_of(run.data.tags, lambda beat, run_id=run_id: watch.unchanged_for(run_id, beat))
        if reason is None:
            continue
        if run_id in watch.kept:  # another machine's run: ended when this host last saw it beat
            end_ms = watch.first_seen_ms(run_id)
        else:
            end_ms = int(float(run.data.tags[TAG_HEARTBEAT]) * 1000)
        end_ms = min(max(end_ms, run.info.start_time), int(time.time() * 1000))
        if run_state.end_if_running(client, run_id, "KILLED", end_ms, reason):
            log.warning("run %s (%s) was left RUNNING: %s; marked KILLED", run_id, run.info.run_name, reason)
            reaped.append(run_id)
    watch.save()
    return reaped


class Heartbeat:
    """Refreshes a run's heartbeat tag every ``interval`` seconds, in a daemon
    thread, until ``stop()``. A store that cannot be written for a while only
    delays the heartbeat (the first failure is a warning naming the store,
    the rest are counted); a run that another command took for dead meanwhile
    is set RUNNING again, since its process is evidently alive."""

    def __init__(self, tracking_uri: str, run_id: str, interval: float = HEARTBEAT_SECONDS):
        self.tracking_uri, self.run_id, self.interval = tracking_uri, run_id, interval
        self.beats = self.failures = 0
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._beat, name=f"heartbeat-{run_id[:8]}", daemon=True)

    def start(self) -> Heartbeat:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopped.set()
        self._thread.join(timeout=5)
        if self.failures:
            log.warning("run %s: %d of %d heartbeats could not be written", self.run_id, self.failures, self.beats)

    def _beat(self) -> None:
        from mlflow.tracking import MlflowClient

        from mnist_runner.redaction import redact
        from mnist_runner.tracking import run_state

        client = MlflowClient(self.tracking_uri)
        while not self._stopped.wait(self.interval):
            self.beats += 1
            try:
                client.set_tag(self.run_id, TAG_HEARTBEAT, f"{time.time():.0f}")
                if run_state.revive_if_reaped(client, self.run_id):
                    log.warning(
                        "run %s had been marked KILLED by a command that took its process for dead; it is "
                        "alive: RUNNING again",
                        self.run_id,
                    )
            except Exception as error:  # the run reports store errors itself
                self.failures += 1
                if self.failures == 1:
                    log.warning(
                        "run %s: its heartbeat could not be written to %s (%s); if that lasts %.0f min, "
                        "commands on other machines take the run for dead until it beats again",
                        self.run_id,
                        redact(self.tracking_uri),
                        error,
                        STALE_AFTER_SECONDS / 60,
                    )
