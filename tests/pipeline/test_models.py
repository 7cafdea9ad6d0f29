import pytest
from omegaconf import OmegaConf

from mnist_runner.pipeline.models import build_model
from mnist_runner.pipeline.preprocess import Rescale

# The course's networks and keras-io's convnet, counted by hand:
# dense 784*512+512 + 512*256+256 + 256*128+128 + 128*32+32 + 32*10+10;
# cnn 3*3*32+32 + 13*13*32*128+128 + 128*10+10; convnet 320 + 18,496 + 1600*10+10.
EXPECTED_PARAMETERS = {"dense": 570_602, "cnn": 693_962, "convnet": 34_826}


def model_cfg(compose_cfg, *overrides):
    return OmegaConf.to_container(compose_cfg(*overrides).model, resolve=True)


@pytest.mark.parametrize("name,count", EXPECTED_PARAMETERS.items())
def test_parameter_counts(compose_cfg, name, count):
    model = build_model(model_cfg(compose_cfg, f"model={name}"), (28, 28), 10, Rescale(1 / 255, 0.0))
    assert model.count_params() == count
    assert model.input_shape == (None, 28, 28)
    assert model.output_shape == (None, 10)


def test_course_cnn_layer_order(compose_cfg):
    model = build_model(model_cfg(compose_cfg, "model=cnn"), (28, 28), 10, Rescale(1 / 255, 0.0))
    kinds = [type(layer).__name__ for layer in model.layers]
    assert kinds == [
        "InputLayer",
        "Rescaling",
        "Reshape",
        "Conv2D",
        "MaxPooling2D",
        "Activation",
        "Flatten",
        "Dense",
        "Dense",
    ]


def test_sizes_are_config_values(compose_cfg):
    cfg = model_cfg(compose_cfg, "model=dense", "model.hidden_units=[64]", "model.dropout=0.2")
    model = build_model(cfg, (28, 28), 10, Rescale(1.0, 0.0))
    assert model.count_params() == 784 * 64 + 64 + 64 * 10 + 10
    assert sum(type(layer).__name__ == "Dropout" for layer in model.layers) == 1


def test_model_applies_the_preprocessing(compose_cfg):
    import numpy as np

    model = build_model(model_cfg(compose_cfg), (28, 28), 10, Rescale(0.5, -1.0))
    rescaled = model.get_layer("preprocess")(np.full((1, 28, 28), 4.0, dtype="float32"))
    assert float(np.asarray(rescaled).max()) == pytest.approx(1.0)


def test_cnn_on_8x8_digits(compose_cfg):
    model = build_model(model_cfg(compose_cfg, "model=cnn"), (8, 8), 10, Rescale(1 / 16, 0.0))
    assert model.output_shape == (None, 10)


def test_unknown_model_type(compose_cfg):
    cfg = model_cfg(compose_cfg) | {"type": "transformer"}
    with pytest.raises(ValueError, match=r"model.type='transformer': choose one of \['dense', 'cnn'\]"):
        build_model(cfg, (28, 28), 10, Rescale(1.0, 0.0))


def test_batch_norm_follows_each_convolution_which_then_has_no_bias(compose_cfg):
    cfg = model_cfg(compose_cfg, "model=convnet", "model.batch_norm=true")
    model = build_model(cfg, (28, 28), 10, Rescale(1 / 255, 0.0))
    kinds = [type(layer).__name__ for layer in model.layers]
    assert kinds.count("BatchNormalization") == 2
    for index, kind in enumerate(kinds):
        if kind == "Conv2D":
            assert kinds[index + 1] == "BatchNormalization"
            assert not model.layers[index].use_bias
    # convnet's 34,826 less the two convolutions' biases (32 + 64), plus
    # 4 numbers per channel of each normalisation (scale, offset, mean, variance).
    assert model.count_params() == 34_826 - 96 + 4 * 96
