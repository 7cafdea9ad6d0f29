"""``python run.py`` as people see it (issue 14): the run id at the start, the
resume command when a run is interrupted, resuming a run interrupted in its
first epoch, a quiet console (no TensorFlow start-up lines, no retracing
warnings, no download progress bars) unless ``verbose=true``, and the hint
for tags given without ``+``.

Each test starts ``python run.py`` as a user would: without the
TF_CPP_MIN_LOG_LEVEL that the ``run_cli`` fixture sets, so that the quiet
console is the runner's own doing.
"""

from __future__ import annotations

import signal
import subprocess
import time
from dataclasses import dataclass

import pytest

pytestmark = pytest.mark.slow

# What TensorFlow prints from C++ while it loads, and its Python warnings.
TF_START_UP = ("absl::InitializeLog", "oneDNN", "cpu_feature_guard")
NOISE = (*TF_START_UP, "retracing", "Downloading artifacts")
# A user's shell: none of the quieting or verbosity the tests' own environment may set.
USER_ENV = {"TF_CPP_MIN_LOG_LEVEL": None, "MNIST_RUNNER_VERBOSE": None, "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": None}


@dataclass
class Interrupted:
    output: str  # stdout and stderr, interleaved
    returncode: int
    run_id: str | None


def interrupt(
    tmp_store, when: str, signum: int, *overrides: str, timeout: int = 300, after_signal: int = 120
) -> Interrupted:
    """Start ``python run.py``, send ``signum`` once a line containing
    ``when`` is printed, and wait up to ``after_signal`` seconds for the
    process to end (then kill it: ``returncode`` is -9)."""
    process = tmp_store.start_py(*overrides, env=USER_ENV)
    lines, run_id, deadline = [], None, time.monotonic() + timeout
    try:
        for line in process.stdout:
            lines.append(line)
            if "MLflow run " in line and " started (experiment" in line:
                run_id = line.split("MLflow run ", 1)[1].split()[0]
            if when in line:
                process.send_signal(signum)
                break
            if time.monotonic() > deadline:
                break
        try:
            rest, _ = process.communicate(timeout=after_signal)
        except subprocess.TimeoutExpired:
            process.kill()
            rest, _ = process.communicate()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    return Interrupted("".join(lines) + rest, process.returncode, run_id)


def without_noise(output: str) -> None:
    shown = [line for line in output.splitlines() if any(marker in line for marker in NOISE)]
    assert not shown, "\n".join(shown)


def test_a_run_interrupted_in_its_first_epoch_is_resumed_from_the_start(tmp_store):
    first = interrupt(tmp_store, "Epoch 1/", signal.SIGINT, "data=digits", "trainer.epochs=3")

    assert first.returncode == 130, first.output
    run_id = first.run_id
    assert run_id and len(run_id) == 32, first.output
    hint = (
        f"interrupted (SIGINT); run {run_id} can be resumed: python run.py resume={run_id} tracking.uri={tmp_store.uri}"
    )
    assert hint in first.output
    without_noise(first.output)
    client = tmp_store.client()
    assert client.get_run(run_id).info.status == "KILLED"
    assert not list((tmp_store.checkpoints / run_id).glob("*")), "no epoch ended, so no checkpoint"

    resumed = tmp_store.run_py(f"resume={run_id}", run_dir="hydra-resume", env=USER_ENV, timeout=300)

    assert resumed.returncode == 0, resumed.stderr[-3000:]
    output = resumed.stdout + resumed.stderr
    assert f"resuming run {run_id} (dense-digits, KILLED) from epoch 0 of 3" in output
    assert f"MLflow run {run_id} resumed (experiment 'digits')" in output
    without_noise(output)  # reading the run's config.yaml back shows no progress bar
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED"
    assert run.data.tags["resumed_from_epoch"] == "0"
    assert [m.step for m in client.get_metric_history(run_id, "val_accuracy")] == [1, 2, 3]
    assert len(tmp_store.runs("digits")) == 1  # the same run, not a new one
    # run.py's summary line, as train() prints it
    accuracy = run.data.metrics["test_accuracy"]
    assert f"test_accuracy={accuracy:.4f}  final_overfit_gap=" in output
    assert f"MLflow run {run_id} (experiment 'digits'); open it: " in output


def test_a_verbose_run_stopped_as_it_starts_prints_the_resume_command_and_resumes_as_offered(tmp_store):
    """SIGTERM as the run starts (its run id printed, no epoch yet): it ends
    KILLED within a minute, printing how to resume it, and resumes. With
    ``verbose=true``, TensorFlow's start-up lines are back."""
    stopped = interrupt(
        tmp_store, "MLflow run ", signal.SIGTERM, "data=digits", "trainer.epochs=2", "verbose=true", after_signal=60
    )
    assert stopped.returncode == 143, f"did not end within 60 s of SIGTERM:\n{stopped.output[-2000:]}"
    run_id = stopped.run_id
    assert run_id, stopped.output[-3000:]
    assert (
        f"interrupted (SIGTERM); run {run_id} can be resumed: python run.py resume={run_id} "
        f"tracking.uri={tmp_store.uri}"
    ) in stopped.output
    assert any(marker in stopped.output for marker in TF_START_UP), stopped.output[:3000]
    assert tmp_store.client().get_run(run_id).info.status == "KILLED"
    resumed = tmp_store.run_py(f"resume={run_id}", run_dir="hydra-resume", env=USER_ENV, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert tmp_store.client().get_run(run_id).info.status == "FINISHED"


def test_tags_without_plus_get_a_hint(empty_store):
    done = empty_store.run_py("data=digits", "tracking.tags={team: vision}", env=USER_ENV, timeout=120)
    assert done.returncode == 2
    assert "Set tags with ++tracking.tags={team: vision} or +tracking.tags.team=vision" in done.stderr
    assert not empty_store.db.exists()  # nothing ran
