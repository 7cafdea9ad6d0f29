"""Interruption and divergence of real `python run.py` runs (the same config
and seed giving the same numbers in another process: tests/sweeps/test_sweep.py)."""

import signal

import mlflow
import pandas as pd
import pytest
from helpers.store_copies import migrated_store

pytestmark = pytest.mark.e2e


def start_and_interrupt(store, signum, epochs, *extra):
    """Start `python run.py`, send ``signum`` once two epochs are complete; returns (returncode, output, uri)."""
    process = store.start_py("data.train_samples=6000", f"trainer.epochs={epochs}", "tracking.log_model=false", *extra)
    output = []
    for line in process.stdout:
        output.append(line)
        if line.startswith("Epoch 3/"):
            process.send_signal(signum)
            break
    rest, _ = process.communicate(timeout=120)
    return process.returncode, "".join(output) + rest, store.uri


def check_killed_with_history(store, uri) -> str:
    """The interrupted run is KILLED with the history of its first two
    epochs (metrics, history.csv, the plot), no test result, and the
    checkpoint of epoch 2 kept for resuming; returns its id."""
    client, runs = store.client(), store.runs()
    assert len(runs) == 1
    run = runs[0]
    assert run.info.status == "KILLED"
    assert run.data.tags["failure_reason"] == "interrupted"
    steps = [m.step for m in client.get_metric_history(run.info.run_id, "overfit_gap")]
    assert steps[:2] == [1, 2]
    history = pd.read_csv(
        mlflow.artifacts.download_artifacts(
            run_id=run.info.run_id, artifact_path="history.csv", dst_path=str(store.root / "dl"), tracking_uri=uri
        )
    )
    assert len(history) >= 2 and list(history["epoch"][:2]) == [1, 2]
    assert "plots/history.png" in {a.path for a in client.list_artifacts(run.info.run_id, "plots")}
    assert "test_accuracy" not in run.data.metrics
    folder = store.checkpoints / run.info.run_id
    assert {"epoch-2.json", "epoch-2.keras"} <= {path.name for path in folder.iterdir()}
    return run.info.run_id


def test_a_run_stopped_with_sigterm_is_killed_with_its_history(tmp_store):
    returncode, output, uri = start_and_interrupt(tmp_store, signal.SIGTERM, 50)
    assert returncode == 143, output[-2000:]
    check_killed_with_history(tmp_store, uri)


def test_a_run_stopped_with_ctrl_c_is_killed_with_its_history_and_resumes_from_its_checkpoint(tmp_store):
    returncode, output, uri = start_and_interrupt(tmp_store, signal.SIGINT, 5)
    assert returncode == 130, output[-2000:]
    run_id = check_killed_with_history(tmp_store, uri)
    # The store's own places, as the run logged them: resume accepts a value it already has.
    done = tmp_store.run_py(f"resume={run_id}", run_dir="hydra2", timeout=300)
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    client, runs = tmp_store.client(), tmp_store.runs()
    assert len(runs) == 1, "resuming continues the same run"
    run = runs[0]
    assert run.info.status == "FINISHED" and "failure_reason" not in run.data.tags
    resumed_from = int(run.data.tags["resumed_from_epoch"])
    assert 2 <= resumed_from < 5
    steps = sorted({m.step for m in client.get_metric_history(run_id, "overfit_gap")})
    assert steps == [1, 2, 3, 4, 5]
    history = pd.read_csv(
        mlflow.artifacts.download_artifacts(
            run_id=run_id, artifact_path="history.csv", dst_path=str(tmp_store.root / "dl2"), tracking_uri=uri
        )
    )
    assert list(history["epoch"]) == [1, 2, 3, 4, 5]
    assert "test_accuracy" in run.data.metrics
    assert not (tmp_store.checkpoints / run_id).exists(), "a finished run removes its checkpoint"


def test_resume_of_unknown_run(empty_store, tmp_path):
    done = empty_store.run_py("resume=0123456789abcdef0123456789abcdef")
    assert done.returncode == 2
    assert "resume=0123456789abcdef0123456789abcdef: " in done.stdout + done.stderr
    assert "no MLflow store there" in done.stdout + done.stderr
    assert not empty_store.db.exists()

    store = migrated_store(tmp_path / "existing")  # a store without that run
    done = store.run_py("resume=0123456789abcdef0123456789abcdef")
    assert done.returncode == 2
    assert f"resume=0123456789abcdef0123456789abcdef: no such run in {store.uri}" in done.stdout + done.stderr


def test_diverging_loss_fails_the_run_with_its_reason(tmp_store):
    done = tmp_store.run_py(
        "data=digits", "trainer.optimizer=sgd", "trainer.learning_rate=1e6", "tracking.log_model=false"
    )
    assert done.returncode == 1
    assert "training diverged: the loss became nan in epoch 1" in done.stdout + done.stderr
    runs = tmp_store.runs()
    assert [r.info.status for r in runs] == ["FAILED"]
    assert runs[0].data.tags["failure_reason"].startswith("RunFailed: training diverged")
