"""Sweeps stopped for real (``kill -9`` to the whole process group, Ctrl-C),
then continued with ``python run.py resume=<parent run id>``; extended with
more seeds; a sweep whose job fails exits 1 and is continued once the cause
is gone. Every check reads the store afterwards. A search continued with
``resume=<parent run id>``: test_search.py."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pandas as pd
import pytest
from helpers.hooks import hook_env, paused_finishing, replaced_on_import

from mnist_runner.tracking import runs_cli, sweep_records

pytestmark = pytest.mark.e2e

# Long enough that a job is caught between its second and last epoch; each
# epoch of the digits costs about 0.2 s.
EPOCHS = 12
# What every launch here adds after the test's own overrides.
DIGITS = ("data=digits", "tracking.log_model=false")


def run(store, *overrides: str, sweep_dir: str, multirun: bool = False, env=None) -> subprocess.CompletedProcess:
    """``python run.py [-m] <overrides> DIGITS``, the sweep's Hydra output in
    ``store.root / sweep_dir``."""
    return store.run_py(*overrides, *DIGITS, multirun=multirun, sweep_dir=sweep_dir, env=env)


def epochs_logged(store, run_id: str) -> list[int]:
    return sorted(m.step for m in store.client().get_metric_history(run_id, "loss"))


def stop_mid_sweep(
    store, signum: int, *overrides: str, finished: int = 1, env=None, release: Path | None = None
) -> subprocess.CompletedProcess:
    """Start a sweep; once ``finished`` of its runs have finished and another
    has logged 2 epochs (so it has a checkpoint), send ``signum`` to its whole
    process group, as a terminal's Ctrl-C does (or ``kill -9 -<pgid>``).
    With ``release`` (``hooks.paused_finishing``'s file), wait also for a run
    that has trained every epoch and is being finished in the background
    while the next one trains, and let that run go on once signalled."""
    process = store.start_py(*overrides, *DIGITS, multirun=True, sweep_dir="sweep", start_new_session=True, env=env)
    deadline = time.monotonic() + 300
    try:
        while time.monotonic() < deadline and process.poll() is None:
            time.sleep(0.2)
            try:
                runs = store.runs(role="child")
                epochs = {r.info.run_id: len(epochs_logged(store, r.info.run_id)) for r in runs}
            except Exception:  # the store is being created
                continue
            done = [r for r in runs if r.info.status == "FINISHED"]
            running = [r for r in runs if r.info.status == "RUNNING"]
            finishing = {r.info.run_id for r in running if epochs[r.info.run_id] == EPOCHS}
            busy = [
                r for r in running if epochs[r.info.run_id] >= 2 and (release is None or r.info.run_id not in finishing)
            ]
            if len(done) >= finished and busy and (finishing or release is None):
                os.killpg(process.pid, signum)
                if release is not None:
                    release.touch()
                break
        output, _ = process.communicate(timeout=180)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    assert process.returncode in (-signum, 128 + signum, 130), output[-3000:]
    return subprocess.CompletedProcess(process.args, process.returncode, output, "")


def check_continued(
    store, before: list, before_epochs: dict[str, int], jobs: int, done: subprocess.CompletedProcess, sweep_dir: str
) -> None:
    """After the continuation: one FINISHED run per job under the same parent,
    the runs that had finished untouched, the interrupted ones continued in
    their own runs, each epoch logged once, and the report of every job."""
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-3000:]
    [parent] = store.runs(role="parent")
    assert parent.info.status == "FINISHED"
    after = {r.info.run_id: r for r in store.runs(role="child")}
    assert len(after) == jobs and all(r.info.status == "FINISHED" for r in after.values())
    assert len({r.data.tags[sweep_records.TAG_JOB_KEY] for r in after.values()}) == jobs
    assert {r.data.tags["mlflow.parentRunId"] for r in after.values()} == {parent.info.run_id}
    for run in before:
        if run.info.status == "FINISHED":  # kept as it was: not trained again
            assert after[run.info.run_id].info.end_time == run.info.end_time
        elif before_epochs[run.info.run_id] >= 2:  # had a checkpoint: continued in its own run from it
            assert run.info.run_id in after
            assert int(after[run.info.run_id].data.tags["resumed_from_epoch"]) >= 1, run.info
    for run_id in after:
        assert epochs_logged(store, run_id) == list(range(1, EPOCHS + 1)), run_id
    table = pd.read_csv(store.root / sweep_dir / "report" / "gap_report.csv")
    assert sorted(table["run_id"]) == sorted(after)
    assert f"overfitting-gap report ({jobs} runs;" in output


@pytest.mark.parametrize(
    "launcher, signum, values",
    [
        # kill -9 to the whole process group: the sweep and its workers die at once.
        (["hydra/launcher=joblib", "hydra.launcher.n_jobs=2"], signal.SIGKILL, ["trainer.seed=1,2"]),
        # Ctrl-C: every process of the group gets SIGINT.
        (["hydra/launcher=joblib", "hydra.launcher.n_jobs=2"], signal.SIGINT, ["trainer.seed=1,2"]),
        ([], signal.SIGKILL, ["trainer.seed=1,2"]),
    ],
    ids=["joblib-kill-9", "joblib-ctrl-c", "in-process-kill-9"],
)
def test_a_stopped_sweep_continues_to_one_finished_run_per_job(tmp_store, launcher, signum, values):
    grid = [*launcher, "model.dropout=0.0,0.5", *values, f"trainer.epochs={EPOCHS}"]
    jobs = 2 * len(values[0].split("=")[1].split(","))
    # In one process, killed while the second job is being finished in the
    # background and the third trains.
    env, release = paused_finishing(tmp_store.root / "paused", 2) if not launcher else (None, None)
    stopped = stop_mid_sweep(tmp_store, signum, *grid, env=env, release=release)
    [parent] = tmp_store.runs(role="parent")
    parent_id = parent.info.run_id
    before = tmp_store.runs(role="child")
    if signum == signal.SIGINT:  # the sweep itself ended every run and wrote the report of what finished
        assert f"continue it (finished jobs are kept): python run.py resume={parent_id}" in stopped.stdout
        assert parent.info.status == "KILLED"
        assert all(r.info.status in ("FINISHED", "KILLED") for r in before), [r.info.status for r in before]
        assert {r.data.tags["failure_reason"] for r in before if r.info.status == "KILLED"} <= {
            "interrupted",
            "interrupted (SIGINT): the sweep was stopped",
        }
        assert (tmp_store.root / "sweep" / "report" / "gap_report.csv").is_file()
    before_epochs = {r.info.run_id: len(epochs_logged(tmp_store, r.info.run_id)) for r in before}
    assert any(r.info.status == "FINISHED" for r in before) and len(before) < jobs + 2

    done = run(tmp_store, f"resume={parent_id}", sweep_dir="continued")

    check_continued(tmp_store, before, before_epochs, jobs, done, "continued")
    if release is not None:  # the run killed while being finished: tested and recorded in its own run now
        [killed_finishing] = [
            r.info.run_id for r in before if r.info.status == "RUNNING" and before_epochs[r.info.run_id] == EPOCHS
        ]
        continued = tmp_store.client().get_run(killed_finishing)
        assert continued.data.tags["resumed_from_epoch"] == str(EPOCHS)
        assert "test_accuracy" in continued.data.metrics
        assert "plots/confusion_matrix.png" in {
            a.path for a in tmp_store.client().list_artifacts(killed_finishing, "plots")
        }
    output = done.stdout + done.stderr
    assert f"continuing sweep {parent.data.tags['sweep_id']} (parent MLflow run {parent_id}): {jobs} jobs" in output
    if launcher:  # the recorded launcher, not the default in-process one
        assert "Joblib.Parallel(n_jobs=2" in output, output[-3000:]


def test_extending_a_sweep_runs_only_the_new_jobs_and_a_finished_one_trains_nothing(tmp_store):
    grid = ["model.dropout=0.0,0.5", "trainer.seed=1", f"trainer.epochs={EPOCHS}"]
    # Ctrl-C while the first job is being finished in the background and the second trains.
    env, release = paused_finishing(tmp_store.root / "paused", 1)
    stopped = stop_mid_sweep(tmp_store, signal.SIGINT, *grid, finished=0, env=env, release=release)
    [parent] = tmp_store.runs(role="parent")
    parent_id = parent.info.run_id
    assert f"python run.py resume={parent_id} tracking.uri={tmp_store.uri}" in stopped.stdout

    stopped_runs = tmp_store.runs(role="child")
    # Ctrl-C to an in-process sweep leaves no run RUNNING: the job under way is
    # KILLED; the one being finished, whose training was done, is finished first.
    assert sorted(r.info.status for r in stopped_runs) == ["FINISHED", "KILLED"], [r.info.status for r in stopped_runs]
    [finished] = [r for r in stopped_runs if r.info.status == "FINISHED"]
    assert "test_accuracy" in finished.data.metrics and "failure_reason" not in finished.data.tags
    stopped_epochs = {r.info.run_id: len(epochs_logged(tmp_store, r.info.run_id)) for r in stopped_runs}

    # A changed fixed setting would make the runs incomparable: refused before any job.
    refused = run(tmp_store, f"resume={parent_id}", "trainer.batch_size=64", sweep_dir="refused")
    assert refused.returncode == 2, refused.stdout[-2000:] + refused.stderr[-2000:]
    assert "trainer.batch_size=64" in refused.stderr and "incomparable" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1, refused.stderr
    states = {r.info.run_id: r.info.status for r in tmp_store.runs(role="child")}
    assert states == {r.info.run_id: r.info.status for r in stopped_runs}
    assert tmp_store.runs(role="parent")[0].info.status == "KILLED"

    continued = run(tmp_store, f"resume={parent_id}", sweep_dir="continued")
    check_continued(tmp_store, stopped_runs, stopped_epochs, 2, continued, "continued")
    first = {r.info.run_id: r.info.end_time for r in tmp_store.runs(role="child")}

    extended = run(tmp_store, f"resume={parent_id}", "trainer.seed=1,2", sweep_dir="extended")
    output = extended.stdout + extended.stderr
    assert extended.returncode == 0, output[-3000:]
    assert "4 jobs: 2 finished (kept as they are), 0 interrupted (continued in their runs), 0 failed" in output
    after = {r.info.run_id: r for r in tmp_store.runs(role="child")}
    assert len(after) == 4 and all(r.info.status == "FINISHED" for r in after.values())
    assert all(after[run_id].info.end_time == end for run_id, end in first.items())  # not trained again
    assert sorted(r.data.params["trainer.seed"] for r in after.values()) == ["1", "1", "2", "2"]
    assert len(pd.read_csv(tmp_store.root / "extended" / "report" / "gap_report.csv")) == 4
    [parent] = tmp_store.runs(role="parent")
    assert parent.info.run_id == parent_id and parent.info.status == "FINISHED"
    assert "trainer.seed=1,2" in parent.data.tags[sweep_records.TAG_OVERRIDES]

    again = run(tmp_store, f"resume={parent_id}", sweep_dir="again")
    assert again.returncode == 0, again.stderr[-3000:]
    assert "has finished: nothing to train" in again.stdout + again.stderr
    assert {r.info.run_id: r.info.end_time for r in tmp_store.runs(role="child")} == {
        run_id: run.info.end_time for run_id, run in after.items()
    }


# Test-set time fails with a full disk for the jobs whose dropout is $FAIL_DROPOUT.
FULL_DISK_FOR_ONE_DROPOUT = replaced_on_import(
    "mnist_runner.pipeline.experiment",
    "test_and_record",
    """
import os


def wrap(real):
    def test_and_record(cfg, *args, **kwargs):
        if str(cfg.model.dropout) == os.environ.get("FAIL_DROPOUT"):
            raise OSError(28, "No space left on device")
        return real(cfg, *args, **kwargs)

    return test_and_record
""",
)


def test_a_failed_job_fails_the_sweep_by_name_and_continuing_runs_only_it(tmp_store, capsys):
    env = hook_env(tmp_store.root / "full_disk", FULL_DISK_FOR_ONE_DROPOUT, FAIL_DROPOUT="0.5")
    grid = ["model.dropout=0.0,0.5", "trainer.seed=1,2", "trainer.epochs=3"]

    failed = run(tmp_store, *grid, multirun=True, sweep_dir="sweep", env=env)

    output = failed.stdout + failed.stderr
    assert failed.returncode == 1, output[-3000:]
    [parent] = tmp_store.runs(role="parent")
    parent_id = parent.info.run_id
    assert "2 of 4 jobs did not finish" in output
    assert "model.dropout=0.5 trainer.seed=2 trainer.epochs=3 data=digits" in output
    assert "FAILED (OSError: [Errno 28] No space left on device)" in output
    assert f"continue it (finished jobs are kept): python run.py resume={parent_id}" in output
    assert "(4 runs: 2 finished, 2 failed;" in output
    assert parent.info.status == "FAILED"
    assert parent.data.tags["failure_reason"] == "2 of 4 jobs did not finish"
    report = (tmp_store.root / "sweep" / "report" / "gap_report.md").read_text()
    assert "no finished run (2 FAILED)" in report

    assert runs_cli.main(["sweeps", "--uri", tmp_store.uri, "--experiment", "digits"]) == 0
    listed = capsys.readouterr().out
    assert parent_id[:8] in listed and "FAILED" in listed
    assert [line.split()[-4:] for line in listed.splitlines() if parent_id[:8] in line] == [["2", "0", "2", "0"]]

    before = {r.info.run_id: r for r in tmp_store.runs(role="child")}
    failed_runs = {r.info.run_id for r in before.values() if r.info.status == "FAILED"}
    assert len(failed_runs) == 2

    fixed = run(tmp_store, f"resume={parent_id}", sweep_dir="continued")  # the disk has room again

    output = fixed.stdout + fixed.stderr
    assert fixed.returncode == 0, output[-3000:]
    assert (
        "4 jobs: 2 finished (kept as they are), 0 interrupted (continued in their runs), 2 failed (run again), 0 to run"
        in output
    )
    after = {r.info.run_id: r for r in tmp_store.runs(role="child")}
    new = set(after) - set(before)
    assert {after[run_id].data.tags[sweep_records.TAG_SUPERSEDES] for run_id in new} == failed_runs
    for run_id in failed_runs:  # kept, marked as superseded
        assert after[run_id].info.status == "FAILED"
        assert after[run_id].data.tags[sweep_records.TAG_SUPERSEDED] == "true"
    for run_id, run_before in before.items():
        if run_before.info.status == "FINISHED":
            assert after[run_id].info.end_time == run_before.info.end_time
    table = pd.read_csv(tmp_store.root / "continued" / "report" / "gap_report.csv")
    assert len(table) == 4 and set(table["status"]) == {"FINISHED"}
    assert not failed_runs & set(table["run_id"])
    [parent] = tmp_store.runs(role="parent")
    assert parent.info.status == "FINISHED" and "failure_reason" not in parent.data.tags
