"""A one-node SLURM cluster on 127.0.0.1, to run sweeps through
``hydra/launcher=slurm`` on one machine (and for the ``slurm`` tests).

    python -m mnist_runner.services.slurm_cluster start|stop|status [--dir DIR]

``start`` writes a munge key and a ``slurm.conf`` into DIR (default
``runs/slurm``), starts munged, slurmctld and slurmd as root, waits until the
node is idle and prints the ``export SLURM_CONF=...`` line that clients
(``sbatch``, submitit) need. Everything the daemons write (state, spool, logs,
PID files, the munge socket) stays inside DIR. ``stop`` ends the daemons by
their PID files.
"""

from __future__ import annotations

import argparse
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

from mnist_runner.paths import RUNS_DIR
from mnist_runner.services import startup

DEFAULT_DIR = RUNS_DIR / "slurm"
PARTITION = "local"
# The programs start needs; the clients are what submitit calls.
DAEMONS = ("munged", "slurmctld", "slurmd")
CLIENTS = ("sinfo", "sbatch", "srun", "scontrol", "squeue")
INSTALL_HINT = "run `make install-e2e` (installs slurm-wlm and munge)"


class ClusterError(RuntimeError):
    """The cluster cannot be started or is not healthy; the message says why."""


@dataclass(frozen=True)
class Layout:
    """Where the cluster keeps its files under one folder."""

    root: Path

    @property
    def conf(self) -> Path:
        return self.root / "slurm.conf"

    @property
    def munge_dir(self) -> Path:
        return self.root / "munge"

    @property
    def munge_key(self) -> Path:
        return self.munge_dir / "munge.key"

    @property
    def munge_socket(self) -> Path:
        return self.munge_dir / "munge.socket"

    @property
    def state_dir(self) -> Path:
        return self.root / "state"

    @property
    def spool_dir(self) -> Path:
        return self.root / "spool"

    @property
    def log_dir(self) -> Path:
        return self.root / "log"

    def pid_file(self, daemon: str) -> Path:
        return self.root / "pid" / f"{daemon}.pid"

    def log_file(self, daemon: str) -> Path:
        return self.log_dir / f"{daemon}.log"

    def client_env(self) -> dict[str, str]:
        """The environment for SLURM commands (and submitit) against this cluster."""
        return {**os.environ, "SLURM_CONF": str(self.conf)}


def check_prerequisites() -> None:
    """Fail with what is missing: root rights, or the munge/SLURM programs."""
    if os.geteuid() != 0:
        raise ClusterError(
            "the SLURM cluster's daemons must run as root (slurmd starts jobs as their user); run this as root"
        )
    missing = [name for name in DAEMONS + CLIENTS + ("munge",) if shutil.which(name) is None]
    if missing:
        raise ClusterError(f"missing programs: {', '.join(missing)}; {INSTALL_HINT}")


def machine_resources() -> tuple[int, int]:
    """CPUs this process may use and the memory in MiB, as ``slurmd -C`` reports them.

    A node whose slurm.conf promises more than slurmd finds is drained, and
    without RealMemory submitit's ``--mem`` request is refused.
    """
    cpus = len(os.sched_getaffinity(0))
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return cpus, int(line.split()[1]) // 1024
    raise ClusterError("cannot read MemTotal from /proc/meminfo")


def free_ports(count: int) -> list[int]:
    """Ports free on 127.0.0.1 now; held open together, so they differ."""
    with ExitStack() as stack:
        probes = [stack.enter_context(socket.socket()) for _ in range(count)]
        for probe in probes:
            probe.bind(("127.0.0.1", 0))
        return [probe.getsockname()[1] for probe in probes]


def node_name() -> str:
    # slurmctld only runs on the host named in SlurmctldHost: its own short name.
    return socket.gethostname().split(".")[0]


def write_munge_key(layout: Layout) -> None:
    # munged refuses a socket folder that others may write, a key others may
    # read, and a socket that not everyone can reach (execute on every folder).
    layout.munge_dir.mkdir(parents=True, exist_ok=True)
    layout.munge_dir.chmod(0o755)
    layout.root.chmod(layout.root.stat().st_mode | 0o011)
    for folder in layout.root.parents:
        if not folder.stat().st_mode & 0o001:
            raise ClusterError(
                f"--dir {layout.root}: munged needs its socket reachable by everyone, but {folder} "
                f"is mode {folder.stat().st_mode & 0o777:o}; use a folder whose parents all allow "
                "execute (chmod o+x), e.g. the default runs/slurm or one under /tmp"
            )
    if not layout.munge_key.exists():
        layout.munge_key.write_bytes(secrets.token_bytes(1024))
    layout.munge_key.chmod(0o400)


def slurm_conf_text(layout: Layout, cpus: int, memory_mib: int, ctld_port: int, slurmd_port: int) -> str:
    host = node_name()
    return f"""\
# Written by `python -m mnist_runner.services.slurm_cluster start`: a one-node
# cluster on 127.0.0.1 whose files all live in this folder.
ClusterName=mnist-runner
SlurmctldHost={host}(127.0.0.1)
SlurmctldPort={ctld_port}
SlurmdPort={slurmd_port}
# Bind to 127.0.0.1 only, never to every interface.
CommunicationParameters=NoCtldInAddrAny,NoInAddrAny
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket={layout.munge_socket}
CredType=cred/munge
StateSaveLocation={layout.state_dir}
SlurmdSpoolDir={layout.spool_dir}
SlurmctldPidFile={layout.pid_file("slurmctld")}
SlurmdPidFile={layout.pid_file("slurmd")}
SlurmctldLogFile={layout.log_file("slurmctld")}
SlurmdLogFile={layout.log_file("slurmd")}
# No cgroups (containers often lack them): plain process tracking, no task binding.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
SchedulerType=sched/backfill
# CPUs and memory are consumed per job, so jobs that fit run side by side.
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU_Memory
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
ReturnToService=2
MailProg=/bin/true
NodeName={host} NodeAddr=127.0.0.1 CPUs={cpus} RealMemory={memory_mib} State=UNKNOWN
PartitionName={PARTITION} Nodes={host} Default=YES MaxTime=INFINITE State=UP
"""


def write_config(layout: Layout) -> Path:
    """The munge key, the folders and a slurm.conf with free ports and this machine's CPUs and memory."""
    for folder in (layout.state_dir, layout.spool_dir, layout.log_dir, layout.pid_file("x").parent):
        folder.mkdir(parents=True, exist_ok=True)
    write_munge_key(layout)
    cpus, memory_mib = machine_resources()
    ctld_port, slurmd_port = free_ports(2)
    layout.conf.write_text(slurm_conf_text(layout, cpus, memory_mib, ctld_port, slurmd_port))
    return layout.conf


def read_pid(layout: Layout, daemon: str) -> int | None:
    """The PID of ``daemon`` if its PID file names a live process of that program."""
    try:
        pid = int(layout.pid_file(daemon).read_text().split()[0])
        # A stale PID file may name a recycled PID: check the program's name.
        command = Path(f"/proc/{pid}/comm").read_text().strip()
    except (OSError, ValueError, IndexError):
        return None
    return pid if command == daemon else None


def daemon_commands(layout: Layout) -> dict[str, list[str]]:
    conf = str(layout.conf)
    return {
        "munged": [
            "munged",
            f"--socket={layout.munge_socket}",
            f"--key-file={layout.munge_key}",
            f"--pid-file={layout.pid_file('munged')}",
            f"--log-file={layout.log_file('munged')}",
            f"--seed-file={layout.munge_dir / 'munged.seed'}",
        ],
        # -c: a fresh cluster every start, no jobs recovered from an earlier one.
        "slurmctld": ["slurmctld", "-c", "-f", conf],
        "slurmd": ["slurmd", "-f", conf, "-N", node_name()],
    }


def start(directory: Path = DEFAULT_DIR, timeout: float = 60.0) -> Layout:
    """Configure and start the cluster in ``directory``; return once its node is idle.

    Daemons already running from this folder are left as they are. On a
    failure the daemons started so far are stopped again.
    """
    check_prerequisites()
    layout = Layout(Path(directory).resolve())
    if all(read_pid(layout, daemon) for daemon in DAEMONS):
        wait_until_idle(layout, timeout)
        return layout
    stop(layout.root)
    write_config(layout)
    try:
        for daemon, command in daemon_commands(layout).items():
            # Each daemon forks into the background and writes its PID file.
            done = subprocess.run(command, env=layout.client_env(), capture_output=True, text=True, timeout=30)
            if done.returncode != 0:
                raise ClusterError(
                    f"{daemon} did not start (exit {done.returncode}): "
                    f"{(done.stderr or done.stdout).strip()}\n{log_tail(layout, daemon)}"
                )
            wait_for_pid(layout, daemon)
        wait_until_idle(layout, timeout)
    except BaseException:
        stop(layout.root)
        raise
    return layout


def wait_for_pid(layout: Layout, daemon: str, timeout: float = 15.0) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pid = read_pid(layout, daemon)
        if pid:
            return pid
        time.sleep(0.1)
    raise ClusterError(f"{daemon} exited right after starting\n{log_tail(layout, daemon)}")


def node_state(layout: Layout) -> str:
    done = subprocess.run(
        ["sinfo", "-h", "-N", "-o", "%t"], env=layout.client_env(), capture_output=True, text=True, timeout=15
    )
    return done.stdout.strip() if done.returncode == 0 else ""


def wait_until_idle(layout: Layout, timeout: float = 60.0) -> None:
    """Wait until ``sinfo`` reports the node idle; fail early when a daemon died."""
    deadline = time.monotonic() + timeout
    state = ""
    while time.monotonic() < deadline:
        state = node_state(layout)
        if state == "idle":
            return
        for daemon in DAEMONS:
            if read_pid(layout, daemon) is None:
                raise ClusterError(f"{daemon} is not running\n{log_tail(layout, daemon)}")
        time.sleep(0.5)
    raise ClusterError(
        f"the node is not idle after {timeout:.0f} s (sinfo state: {state or 'no answer'})\n"
        + log_tail(layout, "slurmctld")
        + "\n"
        + log_tail(layout, "slurmd")
    )


def log_tail(layout: Layout, daemon: str, lines: int = 15) -> str:
    return startup.log_tail(layout.log_file(daemon), lines)


def cancel_jobs(layout: Layout, timeout: float = 60.0) -> list[str]:
    """Cancel every job of the cluster and wait until the queue is empty (at
    most ``timeout`` seconds): slurmd leaves running jobs behind when it
    stops, and a job still completing (CG) may still write to the store.
    Returns the jobs still listed then, as ``<id> <state>``."""
    env = layout.client_env()

    def listed() -> list[str]:
        jobs = subprocess.run(["squeue", "-h", "-o", "%i %T"], env=env, capture_output=True, text=True, timeout=15)
        return jobs.stdout.splitlines() if jobs.returncode == 0 else []

    job_ids = sorted({line.split()[0].split("_")[0] for line in listed()})
    if not job_ids:
        return []
    subprocess.run(["scancel", *job_ids], env=env, capture_output=True, timeout=15)
    deadline = time.monotonic() + timeout
    while (left := listed()) and time.monotonic() < deadline:
        time.sleep(0.5)
    return left


def leftover_job_processes(layout: Layout) -> list[int]:
    """Job steps of this cluster still alive (after its daemons were killed):
    slurmstepd and job processes whose environment names this slurm.conf."""
    marker = f"SLURM_CONF={layout.conf}".encode()
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            environ = (proc / "environ").read_bytes().split(b"\0")
            command = (proc / "comm").read_text().strip()
        except OSError:  # gone, or not ours to read
            continue
        in_job = command == "slurmstepd" or any(item.startswith(b"SLURM_JOB_ID=") for item in environ)
        if marker in environ and in_job:
            found.append(int(proc.name))
    return found


def stop(directory: Path = DEFAULT_DIR, timeout: float = 15.0) -> list[str]:
    """Cancel the cluster's jobs, then stop the daemons started from ``directory``
    (SIGTERM, then SIGKILL); returns the names of those that were running.
    Daemons already down are skipped."""
    layout = Layout(Path(directory).resolve())
    if read_pid(layout, "slurmctld") and read_pid(layout, "munged"):
        left = cancel_jobs(layout)
        if left:
            print(
                f"warning: SLURM jobs still completing after they were cancelled: {', '.join(left)}; "
                "their processes are killed with the daemons",
                file=sys.stderr,
            )
    stopped = []
    # Reverse start order: slurmd and slurmctld still need munge while shutting down.
    for daemon in reversed(DAEMONS):
        pid = read_pid(layout, daemon)
        if pid is None:
            continue
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while read_pid(layout, daemon) == pid and time.monotonic() < deadline:
            time.sleep(0.1)
        if read_pid(layout, daemon) == pid:
            os.kill(pid, signal.SIGKILL)
        stopped.append(daemon)
    for pid in leftover_job_processes(layout):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    return stopped


def status(directory: Path = DEFAULT_DIR) -> dict[str, int | None]:
    """The PID of each daemon of ``directory``, or None when it is not running."""
    layout = Layout(Path(directory).resolve())
    return {daemon: read_pid(layout, daemon) for daemon in DAEMONS}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m mnist_runner.services.slurm_cluster",
        description="A one-node SLURM cluster on 127.0.0.1 for sweeps.",
    )
    parser.add_argument("action", choices=["start", "stop", "status"])
    parser.add_argument(
        "--dir",
        type=Path,
        default=DEFAULT_DIR,
        help="folder for slurm.conf, the munge key, state, logs and PID files (default: runs/slurm)",
    )
    args = parser.parse_args(argv)
    layout = Layout(args.dir.resolve())
    try:
        if args.action == "start":
            began = time.monotonic()
            start(layout.root)
            print(
                f"SLURM node idle after {time.monotonic() - began:.1f} s; partition '{PARTITION}'. "
                "Point clients at it with:",
                file=sys.stderr,
            )
            print(f"export SLURM_CONF={layout.conf}")
        elif args.action == "stop":
            stopped = stop(layout.root)
            print(f"stopped: {', '.join(stopped)}" if stopped else "nothing was running", file=sys.stderr)
        else:
            pids = status(layout.root)
            for daemon, pid in pids.items():
                print(f"{daemon}: {'running, pid ' + str(pid) if pid else 'not running'}")
            if all(pids.values()):
                print(f"node: {node_state(layout) or 'no answer'}")
                print(f"export SLURM_CONF={layout.conf}")
            return 0 if all(pids.values()) else 3
    except ClusterError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
