"""Each default is defined once: the schema's dataclasses. The YAML files in
conf/ repeat every key with a comment; these tests make sure the two cannot
disagree, and that derived paths agree with the config. Also: the
experiment is the data set's unless the command line names one, and the
defaults of the user tags, description, system metrics and ``verbose``."""

import dataclasses

import pytest
from omegaconf import OmegaConf

from mnist_runner.config import schema
from mnist_runner.datasets import DATASETS
from mnist_runner.paths import CONFIG_DIR, DEFAULT_TRACKING_URI, PROJECT_ROOT

# The option each group starts with, and its schema.
DEFAULT_OPTIONS = [
    ("data", "mnist", schema.DataConfig),
    ("preprocess", "scale", schema.PreprocessConfig),
    ("model", "dense", schema.DenseConfig),
    ("model", "cnn", schema.CnnConfig),
    ("trainer", "default", schema.TrainerConfig),
    ("tracking", "default", schema.TrackingConfig),
]


def schema_defaults(cls) -> dict:
    return {
        f.name: (f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default)
        for f in dataclasses.fields(cls)
    }


def disagreements(path, cls) -> dict:
    """Keys where the YAML at ``path`` and the schema ``cls`` differ: (yaml, schema) values."""
    yaml = OmegaConf.to_container(OmegaConf.load(path), resolve=False)
    yaml.pop("defaults", None)
    defaults = schema_defaults(cls)
    missing = object()
    return {
        key: (yaml.get(key, missing), defaults.get(key, missing))
        for key in set(yaml) | set(defaults)
        if yaml.get(key, missing) != defaults.get(key, missing)
    }


@pytest.mark.parametrize("group, option, cls", DEFAULT_OPTIONS, ids=lambda v: getattr(v, "__name__", v))
def test_yaml_repeats_every_schema_default_exactly(group, option, cls):
    differing = disagreements(CONFIG_DIR / group / f"{option}.yaml", cls)
    assert not differing, f"conf/{group}/{option}.yaml disagrees with {cls.__name__}: {differing}"


def test_the_checker_notices_a_yaml_that_drifts_or_lacks_a_key(tmp_path):
    yaml = OmegaConf.load(CONFIG_DIR / "trainer" / "default.yaml")
    yaml.epochs = 11
    del yaml["patience"]
    OmegaConf.save(yaml, tmp_path / "default.yaml")
    assert set(disagreements(tmp_path / "default.yaml", schema.TrainerConfig)) == {"epochs", "patience"}


def test_the_default_store_is_the_paths_module_store(compose_cfg):
    cfg = compose_cfg()
    assert cfg.tracking.uri == DEFAULT_TRACKING_URI == f"sqlite:///{PROJECT_ROOT}/runs/mlflow.db"
    assert cfg.trainer.checkpoint_dir == str(PROJECT_ROOT / "runs" / "checkpoints")


@pytest.mark.parametrize("data", sorted(DATASETS))
def test_the_experiment_is_the_data_set_by_default(compose_cfg, data):
    cfg = compose_cfg(f"data={data}")
    assert cfg.tracking.experiment == data


def test_tracking_experiment_still_overrides_the_default(compose_cfg):
    assert compose_cfg("data=digits", "tracking.experiment=x").tracking.experiment == "x"


def test_defaults_of_tags_description_system_metrics_and_verbose(compose_cfg):
    cfg = compose_cfg()
    assert dict(cfg.tracking.tags) == {}
    assert cfg.tracking.description is None
    assert cfg.tracking.system_metrics is True
    assert cfg.tracking.system_metrics_interval == 10
    assert cfg.verbose is False
    schema.validate(cfg)


@pytest.mark.parametrize("name", sorted(DATASETS))
def test_every_data_set_has_a_config_option_naming_it(name):
    yaml = OmegaConf.load(CONFIG_DIR / "data" / f"{name}.yaml")
    assert yaml.name == name


def test_the_schema_checks_training_sizes_against_the_catalog():
    for name, info in DATASETS.items():
        schema.DataConfig(name=name, train_samples=info.train_size)
        with pytest.raises(schema.ConfigError, match=f"and {info.train_size} "):
            schema.DataConfig(name=name, train_samples=info.train_size + 1)
