import pytest

from mnist_runner.config import schema
from mnist_runner.config.schema import ConfigError
from mnist_runner.redaction import redact, redact_override


def test_composed_groups_become_schema_objects(compose_cfg):
    groups = schema.validate(compose_cfg("model=convnet"))
    assert isinstance(groups["model"], schema.CnnConfig) and groups["model"].conv_filters == [32, 64]
    assert isinstance(groups["trainer"], schema.TrainerConfig) and groups["trainer"].epochs == 10


@pytest.mark.parametrize(
    "overrides,message",
    [
        (["trainer.patience=0"], "trainer.patience=0 is not allowed"),
        (["trainer.train_eval_samples=0"], "trainer.train_eval_samples=0 is not allowed"),
        (["trainer.eval_batch_size=0"], "trainer.eval_batch_size=0 is not allowed: must be >= 1"),
        (["trainer.steps_per_execution=0"], "trainer.steps_per_execution=0 is not allowed: must be >= 1"),
        (["model=cnn", "model.kernel_size=0"], "model.kernel_size=0 is not allowed: must be >= 1"),
        (["model=cnn", "model.conv_filters=[]"], None),
        (["tracking.experiment=' '"], "tracking.experiment=' ' is not allowed: must not be empty"),
        (["tracking.uri=runs/mlflow.db"], "tracking.uri='runs/mlflow.db' is not allowed: a URI such as"),
        (["preprocess.name=zca"], "preprocess.name='zca' is not allowed: choose one of scale, standardize, none"),
        (["trainer.lr_schedule=cyclic"], "trainer.lr_schedule='cyclic' is not allowed: choose one of constant, warmup"),
        (["model=cnn", "model.batch_norm=true", "trainer.lr_schedule=warmup_cosine"], None),
    ],
)
def test_ranges_and_choices(compose_cfg, overrides, message):
    cfg = compose_cfg(*overrides)
    if message is None:  # allowed: a CNN without convolutions is a dense net on the image
        schema.validate(cfg)
        return
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace("[", r"\[")):
        schema.validate(cfg)


def test_digits_take_no_path(compose_cfg):
    with pytest.raises(ConfigError, match="data.path='x.npz' is not allowed: data=digits comes with scikit-learn"):
        schema.validate(compose_cfg("data=digits", "data.path=x.npz"))


@pytest.mark.parametrize("interval", ["0.5", "0", "-3"])
def test_a_system_metrics_interval_under_one_second_is_refused(compose_cfg, interval):
    with pytest.raises(schema.ConfigError, match="tracking.system_metrics_interval.*at least 1"):
        schema.validate(compose_cfg(f"tracking.system_metrics_interval={interval}"))


def test_a_system_metrics_interval_of_one_second_is_allowed(compose_cfg):
    schema.validate(compose_cfg("tracking.system_metrics_interval=1", "tracking.system_metrics=false"))


def test_a_tag_value_longer_than_mlflow_keeps_is_refused(compose_cfg):
    with pytest.raises(schema.ConfigError, match="tracking.tags.note"):
        schema.validate(compose_cfg(f"+tracking.tags.note={'x' * 8001}"))


def test_redact_masks_credentials():
    config = {
        "tracking": {"uri": "http://alice:s3cret@host:5000", "api_token": "abc", "experiment": "mnist"},
        "keys": {"aws_secret_access_key": "xyz"},
    }
    masked = redact(config)
    assert masked["tracking"] == {"uri": "http://alice:***@host:5000", "api_token": "***", "experiment": "mnist"}
    assert masked["keys"] == "***"
    assert redact("1e-3", "trainer.learning_rate") == "1e-3"
    assert redact_override("+db.password=hunter2") == "+db.password=***"
    assert redact_override("trainer.epochs=3") == "trainer.epochs=3"
