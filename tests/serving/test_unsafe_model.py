"""A logged model that carries Python code (a ``Lambda`` layer) is refused by
Keras' safe mode when predict loads it (docs/using-models.md: "Models are
loaded with Keras' safe_mode"); its code never runs."""

from __future__ import annotations

import pytest
from helpers.store_copies import open_store

# Builds, saves and loads a Keras model through MLflow.
pytestmark = pytest.mark.slow


def test_a_model_with_python_code_is_refused_not_run(tmp_path, monkeypatch):
    import keras
    import mlflow

    from mnist_runner.serving import predict

    store, experiment_id = open_store(tmp_path / "store", monkeypatch)
    marker = tmp_path / "the-code-ran"
    # The code writes a file when the layer is called, as loading it would.
    code = eval(f"lambda x: (open({str(marker)!r}, 'w').write('ran'), x)[1]")
    model = keras.Sequential([keras.Input((8, 8)), keras.layers.Flatten(), keras.layers.Lambda(code)])
    mlflow.set_tracking_uri(store.uri)
    with mlflow.start_run(experiment_id=experiment_id) as run:
        info = mlflow.keras.log_model(model, name="model", pip_requirements=["keras"])
    assert marker.exists(), "building the model ran the code: the marker works"
    marker.unlink()

    for uri in (f"runs:/{run.info.run_id}/model", info.model_uri):
        with pytest.raises(ValueError, match=r"(?i)lambda.*safe_mode|safe_mode.*lambda"):
            predict.load_keras_model(uri)
        assert not marker.exists(), f"loading {uri} ran the model's code"
