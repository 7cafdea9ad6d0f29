"""The sweep's parent run as the sweep callback opens it, on a temporary store."""

from types import SimpleNamespace

from mnist_runner.sweeps import parent


def test_overrides_with_hydra_edit_prefixes_become_valid_masked_params(tmp_store):
    # MLflow refuses "+" and "~" in a param's key: a sweep given "+key=value"
    # once failed to open its parent run.
    tracking = SimpleNamespace(uri=tmp_store.uri, experiment="mnist", artifact_location=str(tmp_store.artifacts))
    overrides = ["model=dense,cnn", "+trainer.api_token=tok-5ecr3t", "++trainer.epochs=1", "~data.train_samples"]
    info = parent.start_parent_run(tracking, overrides, ["model"], 2, tmp_store.root / "sweep")
    try:
        params = tmp_store.client().get_run(info.parent_run_id).data.params
    finally:
        parent.finish_parent_run(info, tmp_store.root / "sweep" / "report", status="KILLED")
    assert params == {
        "sweep.model": "dense,cnn",
        "sweep.trainer.api_token": "***",
        "sweep.trainer.epochs": "1",
        "sweep.data.train_samples": "",
        "sweep.jobs": "2",
    }
