"""Faults done for real, then the store checked: processes killed with
SIGKILL at random moments and resumed, and many processes starting on a new
store at once, and parallel sweeps on a new store while other processes keep
the CPUs busy. The tests (``test_fault_injection.py``) run a few trials; run
as a script (``make faults``), it runs many and writes the figures that
docs/reliability.md quotes:

    python tests/helpers/fault_injection.py --trials 20 --rounds 10 --out docs/reliability.json
    python tests/helpers/fault_injection.py --trials 0 --rounds 0 --races 0 --sweep-rounds 20 \\
        --out docs/reliability_sweeps.json
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import platform
import random
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

if __package__ in (None, ""):  # run as a script (a make target): tests/ holds the helpers package
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from helpers import TempStore  # noqa: E402
from mnist_runner.paths import PROJECT_ROOT  # noqa: E402
from mnist_runner.tracking.machine import cpu_model  # noqa: E402

# A run long enough to be killed in every phase: start-up, epochs (and their
# checkpoints), the test set and the final logging. About 12 s here.
KILLED_RUN = ("data.train_samples=3000", "trainer.epochs=6", "tracking.log_model=false")


def epoch_steps(store: TempStore, run_id: str) -> collections.Counter:
    """How often each epoch's ``loss`` was logged."""
    return collections.Counter(m.step for m in store.client().get_metric_history(run_id, "loss"))


def random_moment(rng: random.Random, epochs: int = 6) -> tuple[str | None, float]:
    """When to kill a run: a delay after a line of its output that starts
    with a marker (None: after its start). Spread over start-up, every epoch
    (and the checkpoint written at its end), the test set and final logging."""
    phase = rng.choice(["start-up", "epoch", "epoch", "epoch", "after training"])
    if phase == "start-up":
        return None, rng.uniform(0.5, 8.0)
    if phase == "epoch":
        return f"Epoch {rng.randint(1, epochs)}/", rng.uniform(0.0, 0.8)
    return f"Epoch {epochs}/", rng.uniform(0.4, 2.0)


def kill_then_resume(store: TempStore, marker: str | None, delay: float, epochs: int = 6) -> dict:
    """Start a run, SIGKILL it ``delay`` seconds after it prints a line
    starting with ``marker`` (or after it starts), open the store, resume the
    run; what was found at each step."""
    started = time.monotonic()
    process = store.start_py(*KILLED_RUN, run_dir="hydra-killed")
    if marker is not None:
        for line in process.stdout:
            if line.startswith(marker):
                break
    # Keep reading, so that the run never blocks on a full pipe meanwhile.
    threading.Thread(target=process.stdout.read, daemon=True).start()
    try:
        process.wait(timeout=delay)
        killed = False
    except subprocess.TimeoutExpired:
        process.send_signal(signal.SIGKILL)
        process.wait()
        killed = True
    trial = {
        "marker": marker,
        "delay_s": round(delay, 2),
        "killed": killed,
        "ran_s": round(time.monotonic() - started, 2),
    }
    if not store.db.exists():
        return {**trial, "run": None, "zombies": 0, "outcome": "killed before the store existed"}
    runs = store.runs(reap=True)  # opened as any command opens it: runs whose process died are ended
    trial["zombies"] = sum(run.info.status == "RUNNING" for run in runs)
    if not runs:
        return {**trial, "run": None, "outcome": "killed before the run started"}
    (run,) = runs
    trial.update(
        run=run.info.run_id,
        status_after_kill=run.info.status,
        epochs_logged_before=len(epoch_steps(store, run.info.run_id)),
    )
    if run.info.status == "FINISHED":
        trial["outcome"] = "finished before the kill"
    else:
        done = store.run_py(f"resume={run.info.run_id}", run_dir="hydra-resumed")
        trial["resume_exit"] = done.returncode
        if done.returncode != 0:
            trial["resume_error"] = (done.stdout + done.stderr)[-2000:]
        trial["outcome"] = "resumed"
    final = store.client().get_run(run.info.run_id)
    counts = epoch_steps(store, run.info.run_id)
    trial.update(
        final_status=final.info.status,
        epochs_logged_twice=sorted(step for step, n in counts.items() if n > 1),
        epochs_missing=sorted(set(range(1, epochs + 1)) - set(counts)),
    )
    return trial


def trial_ok(trial: dict) -> bool:
    """No run left RUNNING, and a run that started ends FINISHED with every epoch logged once."""
    if trial["zombies"]:
        return False
    if trial.get("run") is None:
        return True
    return trial["final_status"] == "FINISHED" and not trial["epochs_logged_twice"] and not trial["epochs_missing"]


def concurrent_first_use(root: Path, processes: int = 8) -> dict:
    """``processes`` runs started at once on a store that does not exist yet."""
    store = TempStore(root)
    started = [
        store.start_py("data=digits", "trainer.epochs=1", "tracking.log_model=false", run_dir=f"hydra-{i}")
        for i in range(processes)
    ]
    outputs = [p.communicate(timeout=900)[0] for p in started]
    failed = [out[-1500:] for p, out in zip(started, outputs) if p.returncode != 0]
    with sqlite3.connect(store.db) as db:
        integrity = db.execute("PRAGMA integrity_check").fetchone()[0]
        leftovers = [row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE name LIKE '_alembic_tmp%'")]
        statuses = collections.Counter(row[0] for row in db.execute("SELECT status FROM runs"))
    broken = integrity != "ok" or bool(leftovers)
    return {
        "processes": processes,
        "failed": len(failed),
        "failures": failed,
        "broken_store": broken,
        "integrity": integrity,
        "statuses": dict(statuses),
    }


# Two jobs at a time log the same data sets into one experiment at the same
# moment: where MLflow's look-up-then-insert lost a job (1 in 4 on a busy machine).
BUSY_SWEEP = (
    "hydra/launcher=joblib",
    "hydra.launcher.n_jobs=2",
    "data=digits",
    "model=dense,cnn",
    "model.dropout=0.0,0.5",
    "trainer.epochs=1",
    "tracking.log_model=false",
)
BUSY_SWEEP_JOBS = 4


def forced_reaper_races(root: Path, races: int) -> dict:
    """``races`` runs whose process is gone, each ending FINISHED between the
    reaper's search for RUNNING runs and its write (the race forced by
    holding the reaper there); how many changed state afterwards."""
    import shutil

    from helpers.store_copies import store_template
    from mnist_runner.tracking import liveness, store

    temp = TempStore(root)
    root.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(store_template(), temp.db)
    experiment_id = store.connect(temp.uri, "races", str(temp.artifacts))
    client = temp.client()
    dead = {**liveness.process_tags(), liveness.TAG_PID: str(2**22 + 1)}  # no such process
    run_ids = [client.create_run(experiment_id, tags={**dead, "race": str(n)}).info.run_id for n in range(races)]
    decide = liveness.death_of

    def finishes_meanwhile(tags, unchanged_for=None):
        reason = decide(tags, unchanged_for)
        client.set_terminated(run_ids[int(tags["race"])], "FINISHED")
        return reason

    liveness.death_of = finishes_meanwhile
    try:
        reaped = liveness.reap_dead_runs(client)
    finally:
        liveness.death_of = decide
    statuses = collections.Counter(client.get_run(run_id).info.status for run_id in run_ids)
    reasons = sum("failure_reason" in client.get_run(run_id).data.tags for run_id in run_ids)
    return {"races": races, "reaped": len(reaped), "statuses": dict(statuses), "with_failure_reason": reasons}


def cpu_hogs(count: int) -> list[subprocess.Popen]:
    """Processes that keep ``count`` CPUs busy until killed: a busy machine."""
    return [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(count)]


def sweep_on_a_new_store(root: Path) -> dict:
    """A 4-job joblib sweep on a store that does not exist yet: its exit code
    and how many of its jobs ended with a FINISHED run."""
    store = TempStore(root)
    began = time.monotonic()
    done = store.run_py(*BUSY_SWEEP, multirun=True, timeout=900)
    children = store.runs(role="child", reap=True)
    finished = sum(run.info.status == "FINISHED" for run in children)
    logs = done.stdout + done.stderr + "".join(p.read_text(errors="replace") for p in root.rglob("*.log"))
    return {
        "exit": done.returncode,
        "seconds": round(time.monotonic() - began, 1),
        "finished_jobs": finished,
        "lost_jobs": BUSY_SWEEP_JOBS - finished,
        "rows_written_again": logs.count("another process wrote the same row"),
        "failure": (done.stdout + done.stderr)[-1500:] if done.returncode or finished != BUSY_SWEEP_JOBS else None,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=20, help="SIGKILL-then-resume trials")
    parser.add_argument("--rounds", type=int, default=10, help="rounds of processes starting on a new store")
    parser.add_argument("--processes", type=int, default=8, help="processes per round")
    parser.add_argument("--races", type=int, default=200, help="forced races between a run ending and the reaper")
    parser.add_argument(
        "--sweep-rounds", type=int, default=0, help="4-job joblib sweeps on a new store, 2 CPU-bound processes beside"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=PROJECT_ROOT / "docs" / "reliability.json")
    args = parser.parse_args(argv)
    rng = random.Random(args.seed)
    began = time.monotonic()
    kills = []
    for number in range(args.trials):
        with tempfile.TemporaryDirectory(prefix="kill-") as folder:
            trial = kill_then_resume(TempStore(Path(folder)), *random_moment(rng))
        kills.append(trial)
        print(f"kill {number + 1}/{args.trials}: {trial['outcome']}, ok={trial_ok(trial)}", flush=True)
    rounds = []
    for number in range(args.rounds):
        with tempfile.TemporaryDirectory(prefix="concurrent-") as folder:
            result = concurrent_first_use(Path(folder), args.processes)
        rounds.append(result)
        print(
            f"round {number + 1}/{args.rounds}: failed={result['failed']} broken={result['broken_store']}", flush=True
        )
    with tempfile.TemporaryDirectory(prefix="races-") as folder:
        races = forced_reaper_races(Path(folder), args.races) if args.races else None
    if races:
        print(f"reaper races: {races}", flush=True)
    sweeps = []
    hogs = cpu_hogs(2) if args.sweep_rounds else []
    try:
        for number in range(args.sweep_rounds):
            with tempfile.TemporaryDirectory(prefix="busy-sweep-") as folder:
                result = sweep_on_a_new_store(Path(folder))
            sweeps.append(result)
            print(
                f"busy sweep {number + 1}/{args.sweep_rounds}: exit={result['exit']} lost={result['lost_jobs']}",
                flush=True,
            )
    finally:
        for hog in hogs:
            hog.kill()
    summary = {
        "reaper_races": args.races,
        "reaper_races_changed": 0 if races is None else args.races - races["statuses"].get("FINISHED", 0),
        "busy_sweeps": len(sweeps),
        "busy_sweep_jobs": len(sweeps) * BUSY_SWEEP_JOBS,
        "busy_sweep_jobs_lost": sum(r["lost_jobs"] for r in sweeps),
        "busy_sweeps_failed": sum(r["exit"] != 0 for r in sweeps),
        "busy_sweep_rows_written_again": sum(r["rows_written_again"] for r in sweeps),
        "kill_trials": len(kills),
        "kills_mid_run": sum(t["killed"] and t.get("run") is not None and t["outcome"] == "resumed" for t in kills),
        "zombies_found": sum(t["zombies"] for t in kills),
        "resumed": sum(t["outcome"] == "resumed" for t in kills),
        "resumed_to_finished": sum(t["outcome"] == "resumed" and t["final_status"] == "FINISHED" for t in kills),
        "epochs_logged_twice": sum(len(t.get("epochs_logged_twice", [])) for t in kills),
        "epochs_missing": sum(len(t.get("epochs_missing", [])) for t in kills),
        "trials_ok": sum(trial_ok(t) for t in kills),
        "concurrent_rounds": len(rounds),
        "concurrent_processes": sum(r["processes"] for r in rounds),
        "concurrent_failed_runs": sum(r["failed"] for r in rounds),
        "broken_stores": sum(r["broken_store"] for r in rounds),
    }
    report = {
        "command": "python tests/helpers/fault_injection.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": {"cpu": cpu_model(), "cores": os.cpu_count(), "python": platform.python_version()},
        "minutes": round((time.monotonic() - began) / 60, 1),
        "summary": summary,
        "kill_trials": kills,
        "concurrent_rounds": rounds,
        "busy_sweeps": sweeps,
        "reaper_races": races,
    }
    args.out.write_text(json.dumps(report, indent=1) + "\n")
    print(json.dumps(summary, indent=1))
    ok = summary["trials_ok"] == len(kills) and not summary["broken_stores"]
    ok = ok and not summary["reaper_races_changed"]
    return 0 if ok and not summary["busy_sweep_jobs_lost"] and not summary["busy_sweeps_failed"] else 1


if __name__ == "__main__":
    sys.exit(main())
