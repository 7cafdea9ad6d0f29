"""What ``resume=`` accepts: a run id, and only the overrides that make sense
when a run continues (its own config is kept)."""

from __future__ import annotations

import pytest
from omegaconf import OmegaConf

from mnist_runner.config import schema
from mnist_runner.config.schema import ConfigError
from mnist_runner.errors import UserError
from mnist_runner.pipeline.resume import RESUME_OVERRIDES, changed_keys

RUN_ID = "0123456789abcdef0123456789abcdef"
STORED = {
    "data": {"name": "mnist", "path": None},
    "model": {"name": "dense", "hidden_units": [512, 256]},
    "trainer": {"epochs": 3, "batch_size": 128, "checkpoint_dir": "/old/checkpoints"},
    "tracking": {"uri": "sqlite:////old/mlflow.db", "experiment": "mnist"},
    "resume": None,
}


def keys(*overrides: str, **changes) -> list[str]:
    """``changed_keys`` for ``overrides``, ``changes`` being their effect on
    the composed config: {"trainer.epochs": 5}."""
    stored = OmegaConf.create(STORED)
    cfg = OmegaConf.create(STORED)
    for key, value in changes.items():
        OmegaConf.update(cfg, key, value, force_add=True)
    return changed_keys(list(overrides), cfg, stored)


def test_more_epochs_are_allowed():
    assert keys("trainer.epochs=5", **{"trainer.epochs": 5}) == ["trainer.epochs"]


def test_every_allowed_key_is_taken():
    changes = {
        "trainer.epochs": 10,
        "trainer.checkpoint_dir": "/new/checkpoints",
        "data.path": "/data/mnist.npz",
        "tracking.uri": "sqlite:////new/mlflow.db",
    }
    overrides = [f"{key}={value}" for key, value in changes.items()]
    assert keys(*overrides, **changes) == list(changes) == list(RESUME_OVERRIDES)


def test_another_batch_size_is_refused_saying_what_is_allowed():
    with pytest.raises(UserError) as error:
        keys("trainer.batch_size=64", **{"trainer.batch_size": 64})
    message = str(error.value)
    assert message.startswith("resume with trainer.batch_size=64: a resumed run keeps its own config")
    assert "trainer.batch_size cannot change" in message
    for key in RESUME_OVERRIDES:
        assert key in message.split("Allowed with resume:")[1]


def test_another_model_is_refused():
    with pytest.raises(UserError, match="model cannot change"):
        keys("model=cnn", model={"name": "cnn", "conv_filters": [32]})


def test_an_override_equal_to_the_runs_own_value_is_accepted():
    assert keys("trainer.batch_size=128", "model.hidden_units=[512,256]", **{"trainer.batch_size": 128}) == []


def test_hydra_options_and_resume_itself_are_ignored():
    given = [f"resume={RUN_ID}", "hydra.run.dir=/somewhere", "hydra.job.chdir=true", "hydra/launcher=basic"]
    changes = {"resume": RUN_ID, "hydra.run.dir": "/somewhere", "hydra.job.chdir": True}
    assert keys(*given, **changes) == []


def test_prefixed_overrides_count_as_their_key():
    with pytest.raises(UserError, match="trainer.batch_size cannot change"):
        keys("++trainer.batch_size=32", **{"trainer.batch_size": 32})
    assert keys("+trainer.epochs=7", **{"trainer.epochs": 7}) == ["trainer.epochs"]


@pytest.mark.parametrize("given, shown", [("resume=", "''"), ("resume=abc", "'abc'"), (f"resume={RUN_ID}x", None)])
def test_resume_needs_a_run_id(compose_cfg, given, shown):
    cfg = compose_cfg(given)
    with pytest.raises(ConfigError) as error:
        schema.validate(cfg)
    message = str(error.value)
    assert message.startswith(f"resume={shown or repr(cfg.resume)} is not allowed: the id of an interrupted MLflow run")


def test_a_run_id_is_accepted(compose_cfg):
    schema.validate(compose_cfg(f"resume={RUN_ID}"))


def test_a_preset_that_changes_the_run_is_refused(compose_cfg):
    stored = compose_cfg()
    overrides = [f"resume={RUN_ID}", "experiment=course_cnn"]
    cfg = compose_cfg(*overrides)
    assert (cfg.model.type, cfg.trainer.epochs) != (stored.model.type, stored.trainer.epochs)
    with pytest.raises(UserError):
        changed_keys(overrides, cfg, stored)
