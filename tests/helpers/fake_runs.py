"""A store of hand-made runs, for the fast tests that read runs as the real
ones are read (the experiments' kind, the best run, predict's choice,
``mnist-runs``): each run gets the params and metrics the real ones have,
and a small pyfunc model with a signature, so nothing here imports
TensorFlow or trains. MLflow is imported only when a store is made.

Tests get one through the ``fake_store`` fixture (tests/conftest.py): one
store per test module, shared by its tests.
"""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import numpy as np

from helpers import TempStore
from helpers.store_copies import store_template


def tiny_model_class():
    import mlflow

    class Identity(mlflow.pyfunc.PythonModel):
        def predict(self, context, model_input):
            return model_input

    return Identity


@dataclasses.dataclass(frozen=True)
class FakeStore(TempStore):
    """A store of hand-made runs; ``ids``: label -> run id."""

    ids: dict = dataclasses.field(default_factory=dict)


def make_fake_store(root: Path) -> FakeStore:
    """A new store in ``root`` holding the hand-made runs, by label:
    mixed-digits and mixed-mnist (experiment "mixed"); digits-best,
    digits-but-mnist (mnist, logged into "digits") and digits-no-model
    (experiment "digits"); fashion (experiment "fashion_mnist")."""
    import warnings

    import mlflow
    from mlflow.models import ModelSignature
    from mlflow.types import Schema, TensorSpec

    from mnist_runner.tracking import store

    fake = FakeStore(root)
    root.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(store_template(), fake.db)  # migrated once per test session: seconds saved per module
    uri, artifacts = fake.uri, str(fake.artifacts)
    identity = tiny_model_class()()

    def run(label, experiment, data, accuracy, *, model=True, name=None, params=None):
        experiment_id = store.connect(uri, experiment, artifacts)
        with mlflow.start_run(experiment_id=experiment_id, run_name=name or f"dense-{data}") as active:
            mlflow.log_params({"data.name": data, "model.name": "dense", **(params or {})})
            mlflow.log_metrics({"test_accuracy": accuracy, "final_overfit_gap": 0.01})
            if model:
                side = 8 if data == "digits" else 28
                signature = ModelSignature(inputs=Schema([TensorSpec(np.dtype("uint8"), (-1, side, side))]))
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    mlflow.pyfunc.log_model(
                        name="model", python_model=identity, signature=signature, pip_requirements=[]
                    )
            else:
                mlflow.log_text("no model", "model_card.md")
        fake.ids[label] = active.info.run_id

    run("mixed-digits", "mixed", "digits", 0.90)
    run("mixed-mnist", "mixed", "mnist", 0.95)
    run("digits-best", "digits", "digits", 0.80)
    run("digits-but-mnist", "digits", "mnist", 0.99)  # logged into 'digits' with tracking.experiment=digits
    run("digits-no-model", "digits", "digits", 0.97, model=False)
    run("fashion", "fashion_mnist", "fashion_mnist", 0.85)
    return fake
