"""The Python API: ``train(overrides)`` runs the same config and code path as
``python run.py`` and hands back the metrics and the history."""

import pandas as pd
import pytest

from mnist_runner import train
from mnist_runner.config.compose import compose_config
from mnist_runner.errors import UserError


@pytest.mark.slow
def test_train_returns_metrics_and_history_of_the_tracked_run(tmp_store):
    overrides = ["data=digits", "trainer.epochs=2", "tracking.log_model=false", *tmp_store.overrides()]

    result = train(overrides)

    assert isinstance(result.history, pd.DataFrame)
    assert list(result.history["epoch"]) == [1, 2]
    assert {"accuracy", "val_accuracy", "train_eval_accuracy", "overfit_gap"} <= set(result.history.columns)
    assert 0.5 < result.metrics["test_accuracy"] <= 1.0
    run = tmp_store.client().get_run(result.run_id)
    assert run.info.status == "FINISHED"
    assert run.data.metrics["test_accuracy"] == pytest.approx(result.metrics["test_accuracy"])
    assert run.data.params["data.name"] == "digits"
    assert run.data.params["trainer.epochs"] == "2"
    assert "trainer.epochs=2" in run.data.tags["overrides"]


def test_train_composes_presets_like_run_py():
    cfg = compose_config(["experiment=course_cnn", "trainer.epochs=1"])
    assert cfg.model.name == "cnn"
    assert cfg.trainer.epochs == 1
    assert "hydra" not in cfg


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["trainer.epochs=0"], "trainer.epochs=0 is not allowed"),
        (["trainer.batch_size=abc"], "could not be converted to Integer"),
        (["trainer.epochz=3"], "trainer.epochz"),
        (["model=nope"], "Available options in 'model'"),
        (["model=dense,cnn"], "model=dense,cnn"),
        (["experiment=overfitting_gap"], "describe a sweep"),
    ],
)
def test_bad_overrides_raise_a_user_error_before_anything_runs(overrides, message, empty_store):
    with pytest.raises(UserError) as raised:
        train([*overrides, *empty_store.overrides()])
    assert message in str(raised.value)
    assert not empty_store.db.exists()
