"""`python run.py` as a user runs it, on real MNIST, with a temporary MLflow store."""

import re

import mlflow
import numpy as np
import pandas as pd
import pytest

from mnist_runner.datasets.sources import MNIST, combined_checksum

pytestmark = pytest.mark.e2e

PER_EPOCH = ["loss", "accuracy", "val_loss", "val_accuracy", "train_eval_accuracy", "overfit_gap"]
FINAL = ["test_loss", "test_accuracy", "best_val_accuracy", "best_epoch", "final_overfit_gap"]


def test_dense_on_real_mnist_subset_logs_everything(tmp_store, tmp_path):
    done = tmp_store.run_py("data.train_samples=3000", "trainer.epochs=3", "trainer.train_eval_samples=500")
    assert done.returncode == 0, done.stderr[-3000:]
    uri, client, run = tmp_store.uri, tmp_store.client(), tmp_store.only_run("mnist")
    run_id = run.info.run_id

    assert run.info.status == "FINISHED"
    output = done.stdout + done.stderr
    assert f"MLflow run {run_id}" in output and "test_accuracy=" in output
    for name in PER_EPOCH:
        assert [m.step for m in client.get_metric_history(run_id, name)] == [1, 2, 3], name
    for name in FINAL:
        assert name in run.data.metrics, name
    assert 0.7 < run.data.metrics["test_accuracy"] <= 1.0
    gaps = client.get_metric_history(run_id, "overfit_gap")
    assert run.data.metrics["final_overfit_gap"] == pytest.approx(gaps[-1].value)

    params = run.data.params
    assert params["trainer.epochs"] == "3" and params["data.train_samples"] == "3000"
    assert params["model.hidden_units"] == "[512, 256, 128, 32]"
    assert params["derived.train_samples"] == "2100" and params["derived.validation_samples"] == "900"

    tags = run.data.tags
    assert (tags["model"], tags["data"]) == ("dense", "mnist")
    assert "trainer.epochs=3" in tags["overrides"]
    assert tags["data_checksum"] == combined_checksum(MNIST.sha256)
    # A real commit, not the "unknown" that git_tags falls back to.
    assert re.fullmatch(r"[0-9a-f]{40}", tags["git_commit"]), tags["git_commit"]

    artifacts = {a.path for a in client.list_artifacts(run_id)} | {
        a.path for a in client.list_artifacts(run_id, "plots")
    }
    assert {
        "config.yaml",
        "overrides.yaml",
        "history.csv",
        "plots/history.png",
        "plots/confusion_matrix.png",
    } <= artifacts
    history = pd.read_csv(
        mlflow.artifacts.download_artifacts(
            run_id=run_id, artifact_path="history.csv", dst_path=str(tmp_path / "dl"), tracking_uri=uri
        )
    )
    assert list(history["epoch"]) == [1, 2, 3] and set(PER_EPOCH) <= set(history)
    # Artifacts went to the configured location, not ./mlruns of the cwd.
    assert (tmp_path / "artifacts").is_dir() and not (tmp_path / "mlruns").exists()

    mlflow.set_tracking_uri(uri)
    model = mlflow.keras.load_model(f"runs:/{run_id}/model")
    probabilities = model.predict(np.zeros((2, 28, 28), dtype=np.uint8), verbose=0)
    assert probabilities.shape == (2, 10)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)


def test_cnn_on_offline_digits(tmp_store):
    # In bfloat16: TensorFlow's mixed-precision run end to end (JAX's: test_backends.py).
    done = tmp_store.run_py(
        "data=digits", "model=cnn", "trainer.epochs=2", "trainer.precision=mixed_bfloat16", "tracking.log_model=false"
    )
    assert done.returncode == 0, done.stderr[-3000:]
    # Each data set has its own experiment, so digits runs never rank against MNIST ones.
    client, run = tmp_store.client(), tmp_store.only_run("digits")
    assert client.get_experiment_by_name("mnist") is None
    assert run.info.status == "FINISHED"
    assert run.data.tags["model"] == "cnn" and run.data.tags["data"] == "digits"
    assert run.data.params["trainer.precision"] == "mixed_bfloat16" and run.data.tags["backend"] == "tensorflow"
    assert run.data.metrics["test_accuracy"] > 0.5


def test_bad_data_path_fails_before_any_run(tmp_store, tmp_path):
    done = tmp_store.run_py(f"data.path={tmp_path / 'missing.npz'}")
    assert done.returncode != 0
    assert "missing.npz: no such file or folder" in done.stdout + done.stderr
    assert tmp_store.client().get_experiment_by_name("mnist") is not None  # the store was opened
    assert tmp_store.runs("mnist") == []
