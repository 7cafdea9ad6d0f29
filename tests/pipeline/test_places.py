"""A run's folders and store are checked before Keras loads; a job run in a
sweep's own process, whose store the sweep opened, checks only its folders."""

from __future__ import annotations

import pytest

from mnist_runner.errors import UserError
from mnist_runner.pipeline.places import open_run_places
from mnist_runner.tracking import store


def places(compose_cfg, tmp_path, checkpoints):
    return compose_cfg(
        f"trainer.checkpoint_dir={checkpoints}",
        f"tracking.artifact_location={tmp_path / 'artifacts'}",
        f"tracking.uri=sqlite:///{tmp_path}/mlflow.db",
    )


def test_a_job_in_the_sweeps_process_does_not_open_its_store_again(compose_cfg, tmp_path, monkeypatch):
    cfg = places(compose_cfg, tmp_path, tmp_path / "checkpoints")
    monkeypatch.setattr(store, "connect", lambda *args: pytest.fail("the store was opened again"))
    assert open_run_places(cfg, opened_experiment="7") == "7"
    assert (tmp_path / "checkpoints").is_dir() and (tmp_path / "artifacts").is_dir()
    assert not (tmp_path / "mlflow.db").exists()


def test_its_folders_are_still_checked(compose_cfg, tmp_path):
    cfg = places(compose_cfg, tmp_path, "/dev/null/x")
    with pytest.raises(UserError, match="trainer.checkpoint_dir=/dev/null/x: cannot write there"):
        open_run_places(cfg, opened_experiment="7")


def test_otherwise_the_store_is_opened_and_the_experiment_created(compose_cfg, tmp_path):
    cfg = places(compose_cfg, tmp_path, tmp_path / "checkpoints")
    experiment_id = open_run_places(cfg)
    assert (tmp_path / "mlflow.db").is_file()
    assert store.open_existing(cfg.tracking.uri).get_experiment(experiment_id).name == cfg.tracking.experiment
