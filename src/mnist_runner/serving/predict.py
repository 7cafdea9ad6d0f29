"""Predict the digit in image files with a trained model.

    python predict.py digit.png photo.jpg                 # the best run of experiment 'mnist'
    python predict.py digit.png --run <run id>
    python predict.py digit.png --experiment other
    python predict.py digit.png --model-uri models:/mnist-classifier/latest

The images (PNG or JPEG, any size, dark on light or light on dark) are made
into the model's input the way MNIST was made (``images``): the input shape
comes from the model's signature, the pixel range from the data set its run
trained on. The model itself scales the pixels, as in training.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from mnist_runner.config.schema import DEFAULT_EXPERIMENT
from mnist_runner.errors import UserError
from mnist_runner.paths import DEFAULT_TRACKING_URI
from mnist_runner.serving import images, logged_models

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ModelChoice:
    uri: str  # what MLflow loads
    description: str  # for people: which run, how good
    model_input: logged_models.ModelInput


def choose_model(
    tracking_uri: str = DEFAULT_TRACKING_URI,
    run_id: str | None = None,
    experiment: str | None = None,
    model_uri: str | None = None,
) -> ModelChoice:
    """The model of ``model_uri``, of run ``run_id``, or of the best run of
    ``experiment`` (default ``mnist``), in the store at ``tracking_uri``."""
    client = logged_models.open_store(tracking_uri)
    if model_uri is None:
        if run_id:
            run, model = logged_models.run_with_model(client, run_id)
        else:
            run, model = logged_models.best_run(client, experiment or DEFAULT_EXPERIMENT)
        model_uri = model.model_uri
    model_input, source_run = logged_models.model_input(client, model_uri)
    description = model_uri
    if source_run:
        run = client.get_run(source_run)
        accuracy = run.data.metrics.get(logged_models.RANK_METRIC)
        description += f" (run {source_run} '{run.info.run_name}'" + (
            f", test_accuracy={accuracy:.4f})" if accuracy is not None else ")"
        )
    return ModelChoice(uri=model_uri, description=description, model_input=model_input)


def load_images(paths: Sequence[str | Path], model_input: logged_models.ModelInput) -> np.ndarray:
    """The image files as one batch of model inputs; the first bad file is an error."""
    return np.stack([images.prepare_image(path, model_input.shape, model_input.pixel_max) for path in paths])


def load_keras_model(model_uri: str):
    """The Keras model, loaded with Keras' safe mode on (no arbitrary code)."""
    import mlflow.keras

    return mlflow.keras.load_model(model_uri)


def predict_table(paths: Sequence[str | Path], batch: np.ndarray, model) -> pd.DataFrame:
    """One row per file: the predicted class and its probability."""
    probabilities = np.asarray(model.predict(batch, verbose=0))
    return pd.DataFrame(
        {
            "file": [str(path) for path in paths],
            "digit": probabilities.argmax(axis=1),
            "probability": probabilities.max(axis=1),
        }
    )


def predict_files(paths: Sequence[str | Path], choice: ModelChoice) -> pd.DataFrame:
    """Read every image (bad ones fail before TensorFlow loads), then predict."""
    batch = load_images(paths, choice.model_input)
    return predict_table(paths, batch, load_keras_model(choice.uri))


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python predict.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("images", nargs="+", metavar="IMAGE", help="PNG or JPEG files of one digit each")
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--run", metavar="RUN_ID", help="the model of this MLflow run")
    which.add_argument(
        "--experiment",
        metavar="NAME",
        help=f"the best finished run (by {logged_models.RANK_METRIC}) with a model; default: {DEFAULT_EXPERIMENT}",
    )
    which.add_argument("--model-uri", metavar="URI", help="an MLflow model URI, e.g. models:/<name>/latest")
    parser.add_argument("--uri", default=DEFAULT_TRACKING_URI, help="the MLflow tracking store (default: %(default)s)")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        choice = choose_model(args.uri, args.run, args.experiment, args.model_uri)
        log.info("model: %s", choice.description)
        table = predict_files(args.images, choice)
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return error.exit_code
    print(table.to_string(index=False, formatters={"probability": "{:.4f}".format}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
