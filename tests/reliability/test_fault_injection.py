"""Faults done for real, then the store checked: SIGKILL at random moments and
resume, many processes on a new store, stopped and broken sweeps, a full
disk, a locked store, broken stores and checkpoints, and credentials on disk.

``MNIST_RUNNER_FAULT_TRIALS`` sets the number of SIGKILL trials (2 here;
``make faults`` runs many more and writes docs/reliability.json)."""

import os
import random
import signal
import sqlite3
import subprocess
import threading
import time
from pathlib import Path

import psutil
import pytest
from helpers import TempStore, skip_or_fail
from helpers.fault_injection import concurrent_first_use, kill_then_resume, random_moment, trial_ok
from helpers.hooks import (
    REPORT_KERAS_IMPORT,
    SHORT_SQLITE_LOCK_WAIT,
    hook_env,
    report_keras_import,
    short_sqlite_lock_wait,
)

from mnist_runner.tracking.store import ensure_sqlite_store

pytestmark = pytest.mark.e2e

TRIALS = int(os.environ.get("MNIST_RUNNER_FAULT_TRIALS", 2))
QUICK = ("data=digits", "tracking.log_model=false")
# SQLite's lock wait in the launched runs, where a test only needs the lock to be
# seen: MLflow's fixed 20 s, sat out at every write, made each such test last a minute.
LOCK_WAIT_MS = 1000


def one_line_error(done) -> str:
    """The one error line a failed command printed, with no traceback."""
    output = done.stdout + done.stderr
    assert "Traceback" not in output, output[-3000:]
    errors = [line for line in output.splitlines() if "ERROR" in line or line.startswith("error:")]
    assert len(errors) == 1, output[-3000:]
    return errors[0]


def test_sigkill_at_random_moments_leaves_no_run_running_and_every_run_resumes(tmp_path):
    rng = random.Random(int(os.environ.get("MNIST_RUNNER_FAULT_SEED", 1)))
    moments = [random_moment(rng) for _ in range(TRIALS)]
    moments[0] = ("Epoch 3/", 0.3)  # at least one kill mid-training, whatever the draw
    trials = []
    for number, (marker, delay) in enumerate(moments):
        root = tmp_path / f"trial-{number}"
        root.mkdir()
        trials.append(kill_then_resume(TempStore(root), marker, delay))
    failed = [t for t in trials if not trial_ok(t)]
    assert not failed, failed
    assert any(t["outcome"] == "resumed" for t in trials), trials


def test_four_runs_starting_at_once_on_a_new_store(tmp_path):
    """The reported case (four terminals); `make faults` runs rounds of 8, and
    test_pending_and_store.py starts 8 store openings at the same moment."""
    result = concurrent_first_use(tmp_path, processes=4)
    assert result["failed"] == 0, result["failures"]
    assert not result["broken_store"], result
    assert result["statuses"] == {"FINISHED": 4}


def start_sweep(store: TempStore, epochs: int = 40) -> subprocess.Popen:
    """A 4-job joblib sweep on 2 workers, in its own process group (as a terminal starts it)."""
    return store.start_py(
        "hydra/launcher=joblib",
        "hydra.launcher.n_jobs=2",
        *QUICK,
        f"trainer.epochs={epochs}",
        "model.dropout=0.0,0.1,0.2,0.3",
        multirun=True,
        start_new_session=True,
    )


def wait_for_training_children(store: TempStore, count: int = 2, timeout: float = 120) -> None:
    """Until ``count`` child runs have logged an epoch."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if store.db.exists():
            with sqlite3.connect(store.db) as db:
                training = db.execute("SELECT COUNT(DISTINCT run_uuid) FROM metrics WHERE key = 'loss'").fetchone()[0]
            if training >= count:
                return
        time.sleep(0.5)
    raise AssertionError("the sweep's jobs did not start training")


def check_sweep_closed(store: TempStore, parent_status: str) -> list:
    parents = store.runs(role="parent", reap=True)
    children = store.runs(role="child")
    assert [p.info.status for p in parents] == [parent_status]
    assert children and all(r.info.status != "RUNNING" for r in children), [r.info.status for r in children]
    assert (store.root / "sweep" / "report" / "gap_report.csv").is_file()
    return children


# Ctrl-C to a joblib sweep's process group: test_sweep_continue.py's joblib-ctrl-c
# case checks that every run is closed, the report written, and the sweep continued.


def test_sigterm_to_a_joblib_sweep_ends_every_run(tmp_store):
    sweep = start_sweep(tmp_store)
    wait_for_training_children(tmp_store)
    sweep.send_signal(signal.SIGTERM)  # the parent only, as a scheduler or `kill` does
    output, _ = sweep.communicate(timeout=180)
    assert sweep.returncode == 143, output[-3000:]
    check_sweep_closed(tmp_store, "KILLED")


def test_a_killed_worker_fails_the_sweep_with_a_report_of_what_finished(tmp_store):
    sweep = start_sweep(tmp_store)
    wait_for_training_children(tmp_store)
    workers = [
        p for p in psutil.Process(sweep.pid).children(recursive=True) if "popen_loky_posix" in " ".join(p.cmdline())
    ]
    assert workers
    workers[0].send_signal(signal.SIGKILL)  # the OOM killer, say
    output, _ = sweep.communicate(timeout=180)
    assert sweep.returncode == 1, output[-3000:]
    assert "Traceback" not in output, output[-3000:]
    assert "error: sweep" in output and "failed: TerminatedWorkerError" in output
    children = check_sweep_closed(tmp_store, "FAILED")
    assert any("process died" in r.data.tags.get("failure_reason", "") for r in children)


@pytest.fixture
def small_disk(tmp_path):
    """A 20 MB file system of its own (tmpfs), unmounted afterwards."""
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=20m", "tmpfs", str(mount)], capture_output=True)
    if done.returncode != 0:
        skip_or_fail(f"cannot mount a tmpfs (needs root): {done.stderr.decode().strip()}")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], capture_output=True)


def fill(folder: Path) -> Path:
    filler = folder / "filler"
    with open(filler, "wb") as out:
        try:
            while True:
                out.write(bytes(1 << 20))
                out.flush()
        except OSError:
            pass
    return filler


def test_a_disk_that_fills_during_a_run_fails_it_in_one_line_and_nothing_stays_running(tmp_path, small_disk):
    store = TempStore(small_disk)  # the store and the artifacts on the small disk, the rest beside it
    process = store.start_py(
        "data.train_samples=3000",
        "trainer.epochs=40",
        "tracking.log_model=false",
        f"trainer.checkpoint_dir={tmp_path / 'checkpoints'}",
        f"hydra.run.dir={tmp_path / 'hydra'}",
        cwd=tmp_path,
    )
    lines = []
    for line in process.stdout:
        lines.append(line)
        if line.startswith("Epoch 3/"):
            filler = fill(small_disk)
            break
    lines.append(process.communicate(timeout=300)[0])
    done = subprocess.CompletedProcess(process.args, process.returncode, "".join(lines), "")
    assert done.returncode == 1, done.stdout[-3000:]
    assert "the disk is full" in one_line_error(done)
    filler.unlink()  # space again: the next command that opens the store writes the kept state
    [run] = store.runs(reap=True)
    assert run.info.status == "FAILED" and "disk is full" in run.data.tags["failure_reason"]


class HeldLock:
    """Another process's write lock on a SQLite file (a sqlite3 shell left in a
    transaction), held for at most ``seconds`` and released as the block ends."""

    def __init__(self, db: Path, seconds: float):
        self.db, self.seconds = db, seconds
        self.locked = threading.Event()
        self.released = threading.Event()
        self.thread = threading.Thread(target=self._hold, daemon=True)

    def _hold(self):
        connection = sqlite3.connect(self.db, isolation_level=None, check_same_thread=False)
        connection.execute("BEGIN EXCLUSIVE")
        self.locked.set()
        self.released.wait(self.seconds)
        connection.execute("COMMIT")
        connection.close()

    def __enter__(self):
        self.thread.start()
        self.locked.wait(10)
        return self

    def __exit__(self, *exc):
        self.released.set()
        self.thread.join()


def test_a_lock_held_during_a_run_fails_it_in_one_line_and_the_state_is_written_later(tmp_store):
    process = tmp_store.start_py(
        "data.train_samples=3000",
        "trainer.epochs=40",
        "tracking.log_model=false",
        env=short_sqlite_lock_wait(tmp_store.root / "hook", LOCK_WAIT_MS),
    )
    lines = []
    for line in process.stdout:
        lines.append(line)
        if line.startswith("Epoch 3/"):
            break
    with HeldLock(tmp_store.db, 45):
        lines.append(process.communicate(timeout=300)[0])
    done = subprocess.CompletedProcess(process.args, process.returncode, "".join(lines), "")
    assert done.returncode == 1, done.stdout[-3000:]
    assert "locked by another process" in one_line_error(done)
    [run] = tmp_store.runs(reap=True)
    assert run.info.status == "FAILED"


@pytest.mark.parametrize("fault", ["not a database", "a folder", "read-only", "locked", "a 5,000-character name"])
def test_store_faults_at_start_are_one_line_and_leave_no_run(tmp_path, fault):
    store = TempStore(tmp_path)
    extra = []
    lock = None
    if fault == "not a database":
        store.db.write_text("this is not SQLite\n" * 100)
    elif fault == "a folder":
        store.db.mkdir()
    elif fault == "read-only":
        mount = tmp_path / "ro"
        mount.mkdir()
        if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(mount)]).returncode != 0:
            skip_or_fail("cannot mount a tmpfs (needs root)")
        ensure_sqlite_store(mount / "mlflow.db", "tracking.uri")  # a real, empty store
        subprocess.run(["mount", "-o", "remount,ro", str(mount)], check=True)
        store = TempStore(mount)
        extra = [
            f"hydra.run.dir={tmp_path / 'hydra'}",
            f"trainer.checkpoint_dir={tmp_path / 'ck'}",
            f"tracking.artifact_location={tmp_path / 'art'}",
        ]
    elif fault == "locked":
        ensure_sqlite_store(store.db, "tracking.uri")
        lock = HeldLock(store.db, 60)
    else:
        extra = ["tracking.experiment=" + "x" * 5000]
    wait = {"MNIST_TEST_SQLITE_WAIT_MS": str(LOCK_WAIT_MS)} if lock else {}
    try:
        if lock:
            lock.__enter__()
        done = store.run_py(
            *QUICK,
            "trainer.epochs=1",
            *extra,
            env=hook_env(tmp_path / "hook", REPORT_KERAS_IMPORT + (SHORT_SQLITE_LOCK_WAIT if lock else ""), **wait),
            timeout=300,
            cwd=tmp_path,
        )
    finally:
        if fault == "read-only":
            subprocess.run(["umount", "-l", str(tmp_path / "ro")])
    assert done.returncode == 2, (done.stdout + done.stderr)[-3000:]
    line = one_line_error(done)
    assert ("tracking.uri=" in line) or ("tracking.experiment=" in line), line
    assert "KERAS_NOT_IMPORTED" in done.stderr, "the store is checked before Keras loads"
    if lock:
        lock.__exit__()
        assert not store.runs(reap=True), "a store locked at start gets no run"


def test_an_unwritable_checkpoint_folder_is_refused_before_anything_runs(tmp_store):
    done = tmp_store.run_py(
        *QUICK, "trainer.checkpoint_dir=/dev/null/x", timeout=300, env=report_keras_import(tmp_store.root / "hook")
    )
    assert done.returncode == 2
    assert "trainer.checkpoint_dir=/dev/null/x: cannot write there" in one_line_error(done)
    assert "KERAS_NOT_IMPORTED" in done.stderr, "the folders are checked before Keras loads"
    assert not tmp_store.runs(reap=True)


def interrupted_run(store: TempStore, epochs: int, kill_after_epoch: int) -> str:
    """A digits run SIGKILLed once epoch ``kill_after_epoch`` is checkpointed; its run id."""
    process = store.start_py(*QUICK, f"trainer.epochs={epochs}")
    for line in process.stdout:
        if line.startswith(f"Epoch {kill_after_epoch + 1}/"):
            process.send_signal(signal.SIGKILL)
            break
    process.wait()
    [found] = store.runs(reap=True)
    assert found.info.status == "KILLED"
    return found.info.run_id


def test_resume_falls_back_from_a_corrupt_checkpoint_and_applies_more_epochs(tmp_store):
    run_id = interrupted_run(tmp_store, epochs=6, kill_after_epoch=4)
    folder = tmp_store.checkpoints / run_id
    newest = max(folder.glob("epoch-*.keras"), key=lambda p: int(p.stem.split("-")[1]))
    newest.write_bytes(newest.read_bytes()[:1000])  # a disk that lost the end of the file
    done = tmp_store.run_py(f"resume={run_id}", "trainer.epochs=8", run_dir="hydra-resumed")
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    assert "checkpoint passed over" in done.stdout + done.stderr
    run_info = tmp_store.client().get_run(run_id)
    assert run_info.info.status == "FINISHED"
    steps = [m.step for m in tmp_store.client().get_metric_history(run_id, "loss")]
    assert sorted(set(steps)) == list(range(1, 9))


def test_resume_refuses_a_change_that_would_make_another_run(tmp_store):
    run_id = interrupted_run(tmp_store, epochs=4, kill_after_epoch=2)
    reports = report_keras_import(tmp_store.root / "report_imports")
    done = tmp_store.run_py(f"resume={run_id}", "trainer.batch_size=64", run_dir="hydra-resumed", env=reports)
    assert done.returncode == 2
    assert "trainer.batch_size cannot change" in one_line_error(done)
    assert "KERAS_NOT_IMPORTED" in done.stderr, "refused only after loading Keras"
    for path in (tmp_store.checkpoints / run_id).iterdir():
        if path.suffix == ".json":
            path.write_text("{not json")
    done = tmp_store.run_py(f"resume={run_id}", run_dir="hydra-resumed-2", env=reports)
    assert done.returncode == 2
    assert "cannot be continued" in one_line_error(done)
    assert "KERAS_NOT_IMPORTED" in done.stderr


def test_no_credential_reaches_the_disk(tmp_path):
    store = TempStore(tmp_path)
    token, password = "tok-5ecr3t-value", "pa55-5ecr3t-word"
    store.run_py(*QUICK, "trainer.epochs=1", f"+trainer.api_token={token}", run_dir="hydra-run")
    done = store.run_py(
        *QUICK, f"tracking.uri=http://alice:{password}@127.0.0.1:9", run_dir="hydra-server", timeout=300
    )
    assert done.returncode == 2 and password not in done.stdout + done.stderr
    sweep = store.run_py(
        "hydra/launcher=joblib",
        "hydra.launcher.n_jobs=2",
        *QUICK,
        "trainer.epochs=1",
        "model.dropout=0.0,0.2",
        f"+trainer.api_token={token}",
        multirun=True,
    )
    assert sweep.returncode == 0, (sweep.stdout + sweep.stderr)[-3000:]
    assert token not in sweep.stdout + sweep.stderr
    leaked = subprocess.run(["grep", "-rl", "-e", token, "-e", password, str(tmp_path)], capture_output=True, text=True)
    assert leaked.stdout == "", f"found in: {leaked.stdout}"
    hydra_files = list(tmp_path.rglob(".hydra/overrides.yaml"))
    assert len(hydra_files) >= 3 and all(
        "api_token=***" in p.read_text() or "alice:***" in p.read_text() for p in hydra_files
    )
