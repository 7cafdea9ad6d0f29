import keras
import numpy as np
import pytest
from omegaconf import OmegaConf

from mnist_runner.config import schema
from mnist_runner.config.schema import ConfigError
from mnist_runner.pipeline.models import build_model
from mnist_runner.pipeline.preprocess import Rescale
from mnist_runner.pipeline.session import prepare_session


def test_float32_is_the_default(compose_cfg):
    assert compose_cfg().trainer.precision == "float32"


def test_mixed_bfloat16_validates(compose_cfg):
    groups = schema.validate(compose_cfg("trainer.precision=mixed_bfloat16"))
    assert groups["trainer"].precision == "mixed_bfloat16"


def test_unknown_precision_is_refused(compose_cfg):
    with pytest.raises(
        ConfigError, match="trainer.precision='float16' is not allowed: choose one of float32, mixed_bfloat16"
    ):
        schema.validate(compose_cfg("trainer.precision=float16"))


@pytest.mark.parametrize("name", ["dense", "cnn"])
def test_bfloat16_model_outputs_float32(compose_cfg, name):
    model_cfg = OmegaConf.to_container(compose_cfg(f"model={name}").model, resolve=True)
    try:
        prepare_session(seed=0, deterministic=False, precision="mixed_bfloat16")
        model = build_model(model_cfg, (28, 28), 10, Rescale(1 / 255, 0.0))
        assert model.get_layer("preprocess").compute_dtype == "bfloat16"
        probabilities = model(np.zeros((2, 28, 28), dtype="float32"))
        assert keras.backend.standardize_dtype(probabilities.dtype) == "float32"
    finally:
        prepare_session(seed=0, deterministic=False)
    # The next job of a sweep starts in float32 again.
    assert keras.mixed_precision.global_policy().name == "float32"
