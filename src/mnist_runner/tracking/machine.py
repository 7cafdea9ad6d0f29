"""The machine's facts that runs, benchmarks and fault-injection reports
record, read in one place: the CPU as ``/proc/cpuinfo`` describes it."""

from __future__ import annotations

import platform
from pathlib import Path

CPUINFO = Path("/proc/cpuinfo")


def cpuinfo() -> dict[str, str]:
    """Each field of ``/proc/cpuinfo`` (``model name``, ``flags``, ...) with its
    first value: the first processor's, which on one machine every processor
    shares. Empty where there is no such file (not Linux) or it cannot be read."""
    try:
        text = CPUINFO.read_text(errors="replace")
    except OSError:
        return {}
    fields: dict[str, str] = {}
    for line in text.splitlines():
        key, colon, value = line.partition(":")
        if colon:
            fields.setdefault(key.strip(), value.strip())
    return fields


def cpu_model() -> str:
    """The CPU's model name; where ``/proc/cpuinfo`` has none (many ARM
    kernels, not Linux) what ``platform`` knows of the processor."""
    return cpuinfo().get("model name") or platform.processor() or platform.machine()
