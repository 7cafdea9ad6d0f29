"""Interruption, divergence and reproducibility of real `python run.py` runs."""

import os
import signal
import subprocess
import sys

import mlflow
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from mnist_runner.paths import PROJECT_ROOT

pytestmark = pytest.mark.e2e


def runs_of(uri, experiment="mnist"):
    client = MlflowClient(tracking_uri=uri)
    found = client.get_experiment_by_name(experiment)
    return client, client.search_runs([found.experiment_id], order_by=["attributes.start_time"]) if found else []


@pytest.mark.parametrize("signum,exit_code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_interrupted_run_is_killed_with_its_history(tmp_path, signum, exit_code):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    command = [
        sys.executable, str(PROJECT_ROOT / "run.py"), "data.train_samples=6000", "trainer.epochs=50",
        "tracking.log_model=false", f"tracking.uri={uri}", f"tracking.artifact_location={tmp_path / 'art'}",
        f"hydra.run.dir={tmp_path / 'hydra'}",
    ]
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "TF_CPP_MIN_LOG_LEVEL": "2"}
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    output = []
    for line in process.stdout:  # wait until two epochs are complete
        output.append(line)
        if line.startswith("Epoch 3/"):
            process.send_signal(signum)
            break
    rest, _ = process.communicate(timeout=120)
    output = "".join(output) + rest
    assert process.returncode == exit_code, output[-2000:]

    client, runs = runs_of(uri)
    assert len(runs) == 1
    run = runs[0]
    assert run.info.status == "KILLED"
    assert run.data.tags["failure_reason"] == "interrupted"
    steps = [m.step for m in client.get_metric_history(run.info.run_id, "overfit_gap")]
    assert steps[:2] == [1, 2]
    history = pd.read_csv(mlflow.artifacts.download_artifacts(
        run_id=run.info.run_id, artifact_path="history.csv", dst_path=str(tmp_path / "dl"), tracking_uri=uri))
    assert len(history) >= 2 and list(history["epoch"][:2]) == [1, 2]
    assert "plots/history.png" in {a.path for a in client.list_artifacts(run.info.run_id, "plots")}
    assert "test_accuracy" not in run.data.metrics


def test_diverging_loss_fails_the_run_with_its_reason(run_cli):
    done, uri = run_cli("data=digits", "trainer.optimizer=sgd", "trainer.learning_rate=1e6", "tracking.log_model=false")
    assert done.returncode == 1
    assert "training diverged: the loss became nan in epoch 1" in done.stdout + done.stderr
    _, runs = runs_of(uri)
    assert [r.info.status for r in runs] == ["FAILED"]
    assert runs[0].data.tags["failure_reason"].startswith("RunFailed: training diverged")


def test_same_config_and_seed_give_identical_metrics(run_cli):
    overrides = ("data.train_samples=2000", "trainer.epochs=2", "tracking.log_model=false")
    for _ in range(2):
        done, uri = run_cli(*overrides)
        assert done.returncode == 0, done.stderr[-2000:]
    client, runs = runs_of(uri)
    first, second = ({k: v for k, v in r.data.metrics.items() if k != "fit_seconds"} for r in runs)
    assert first == second
    for name in ("loss", "val_accuracy", "overfit_gap"):
        histories = [[m.value for m in client.get_metric_history(r.info.run_id, name)] for r in runs]
        assert histories[0] == histories[1]
    assert runs[0].data.tags["data_checksum"] == runs[1].data.tags["data_checksum"]
    assert runs[0].data.tags["version.keras"]
