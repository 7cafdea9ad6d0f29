"""What the benchmark scripts record about the machine, and whether something
else was using its CPU while they measured.

``machine()`` is the CPU model, core count, bfloat16 instructions, memory and
software versions. ``CpuWatch`` tells this process's own CPU use (itself and
every process it started) apart from everyone else's, from ``/proc/stat``: the
load average counts the benchmark's own processes too, so on its own it cannot
say whether a measurement shared the machine. ``others_share`` is the share of
all cores that other processes (and other tenants of a virtual machine: steal
time) used over an interval; above ``BUSY_SHARE`` the interval counts as busy.
"""

from __future__ import annotations

import os
import platform
import threading
import time
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import psutil

from mnist_runner.tracking.machine import cpuinfo

# Other processes using more than this share of all cores make a measurement "busy".
BUSY_SHARE = 0.10
PACKAGES = ("tensorflow", "tensorflow-cpu", "keras", "jax", "jaxlib", "mlflow", "hydra-core", "numpy", "psutil")


def machine() -> dict:
    cpu = cpuinfo()
    flags = set(cpu.get("flags", "").split())
    versions = {}
    for package in PACKAGES:
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            pass
    return {
        # "unknown" rather than cpu_model()'s architecture: the results' files say so already.
        "cpu": cpu.get("model name") or platform.processor() or "unknown",
        "cores": len(os.sched_getaffinity(0)),
        "logical_cpus_in_proc_stat": psutil.cpu_count(),
        # Whether mixed_bfloat16 can be fast at all here.
        "bfloat16_instructions": sorted(flags & {"avx512_bf16", "amx_bf16"}) or ["none"],
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "os": platform.platform(),
        "python": platform.python_version(),
        "versions": versions,
    }


@dataclass(frozen=True)
class Snapshot:
    wall: float  # time.monotonic()
    busy: float  # CPU seconds of the whole machine, not idle, since boot (steal included)
    total: float  # all CPU seconds since boot
    own: float  # CPU seconds of this process and everything it started


def machine_cpu() -> tuple[float, float]:
    """Busy and total CPU seconds of the machine since boot (first line of /proc/stat)."""
    fields = [int(value) for value in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    # user nice system idle iowait irq softirq steal (guest time is inside user already)
    idle = fields[3] + fields[4]
    tick = os.sysconf("SC_CLK_TCK")
    return (sum(fields) - idle) / tick, sum(fields) / tick


def own_cpu() -> float:
    """CPU seconds of this process, its finished children (waited for) and its
    live descendants (with the children they waited for)."""
    me = psutil.Process()
    times = me.cpu_times()
    seconds = times.user + times.system + times.children_user + times.children_system
    for child in me.children(recursive=True):
        try:
            times = child.cpu_times()
        except psutil.Error:  # ended between the listing and the reading
            continue
        seconds += times.user + times.system + times.children_user + times.children_system
    return seconds


def snapshot() -> Snapshot:
    busy, total = machine_cpu()
    return Snapshot(time.monotonic(), busy, total, own_cpu())


def others_share(before: Snapshot, after: Snapshot) -> float:
    """The share of all cores that other processes used between two snapshots.
    Take them when none of this process's children is starting or ending
    (between measurements): a child reaped in between would be miscounted."""
    total = after.total - before.total
    if total <= 0:
        return 0.0
    others = (after.busy - before.busy) - (after.own - before.own)
    return min(max(others / total, 0.0), 1.0)


def quiet_check(seconds: float = 3.0) -> dict:
    """Others' share of the CPU over the next ``seconds`` (nothing of ours running), and the load average."""
    first = snapshot()
    time.sleep(seconds)
    return {"others_share": round(others_share(first, snapshot()), 3), "load_average": rounded(os.getloadavg())}


def wait_until_quiet(max_wait_s: float, log=print) -> dict:
    """Check before a measurement; while others use the CPU, wait (up to
    ``max_wait_s``) for them to stop. Returns the last check, with ``waited_s``."""
    start = time.monotonic()
    check = quiet_check()
    while check["others_share"] > BUSY_SHARE and time.monotonic() - start < max_wait_s:
        log(f"  busy: other processes use {check['others_share']:.0%} of the CPU; waiting (up to {max_wait_s:.0f} s)")
        time.sleep(min(10.0, max(0.0, max_wait_s - (time.monotonic() - start))))
        check = quiet_check()
    return {**check, "waited_s": round(time.monotonic() - start - 3.0, 1), "busy": check["others_share"] > BUSY_SHARE}


class CpuWatch:
    """Samples the load average and others' CPU share every ``interval`` seconds
    in a background thread while a measurement runs::

        with CpuWatch() as watch:
            ...
        watch.summary()   # others' share over the whole time, the samples
    """

    def __init__(self, interval: float = 5.0):
        self.interval = interval
        self.samples: list[dict] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="cpu-watch", daemon=True)

    def __enter__(self) -> CpuWatch:
        self.first = self._last = snapshot()
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.last = snapshot()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            now = snapshot()
            self.samples.append(
                {
                    "t_s": round(now.wall - self.first.wall, 1),
                    "load_1min": round(os.getloadavg()[0], 2),
                    # A window in which one of our children started or ended can be off; the whole is not.
                    "others_share": round(others_share(self._last, now), 3),
                }
            )
            self._last = now

    def summary(self) -> dict:
        share = others_share(self.first, self.last)
        windows = [sample["others_share"] for sample in self.samples]
        return {
            "others_share": round(share, 3),
            "others_share_max_window": max(windows, default=None),
            "busy": share > BUSY_SHARE,
            "samples": self.samples,
        }


def rounded(values) -> list[float]:
    return [round(value, 2) for value in values]
