"""Predict the digit in image files with a trained model.

    python predict.py digit.png photo.jpg     # mnist-classifier@champion, or the best MNIST run
    python predict.py digit.png --run <run id>
    python predict.py digit.png --data digits  # digits-classifier@champion, or the best digits run
    python predict.py digit.png --model-uri models:/mnist-classifier@champion

The images (PNG or JPEG, any size, dark on light or light on dark) are made
into the model's input the way MNIST was made (``images``): the input shape
comes from the model's signature, the pixel range from the data set its run
trained on. The model itself scales the pixels, as in training.
"""

from __future__ import annotations

import argparse
import logging
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from mnist_runner.config import runtime
from mnist_runner.config.schema import DEFAULT_EXPERIMENT
from mnist_runner.datasets import DATASETS, DEFAULT_DATASET
from mnist_runner.errors import UserError
from mnist_runner.paths import DEFAULT_TRACKING_URI
from mnist_runner.serving import images, logged_models
from mnist_runner.serving.registry import CHAMPION, champion, default_name

log = logging.getLogger(__name__)
# The data sets of handwritten digits, which the images predict reads are.
DIGIT_DATASETS = ("mnist", "digits")


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
    data: str | None = None,
) -> ModelChoice:
    """The model of ``model_uri``, of run ``run_id``, or else the registered
    ``<data>-classifier@champion`` if there is one, or the best run's of
    ``experiment`` (default: the data set's own), in the store at ``tracking_uri``."""
    client = logged_models.open_store(tracking_uri)
    if model_uri is None and run_id is None and experiment is None:
        name = default_name(data or DEFAULT_DATASET, "")
        if champion(client, name) is not None:
            model_uri = f"models:/{name}@{CHAMPION}"
    if model_uri is None:
        if run_id:
            run, model = logged_models.run_with_model(client, run_id)
        else:
            run, model = logged_models.best_run(client, experiment or data or DEFAULT_EXPERIMENT, data)
        model_uri = model.model_uri
    model_input, source_run = logged_models.model_input(client, model_uri)
    description = model_uri
    if source_run:
        run = client.get_run(source_run)
        accuracy = run.data.metrics.get(logged_models.RANK_METRIC)
        description += f" (run {source_run} '{run.info.run_name}'" + (
            f", test_accuracy={accuracy:.4f})" if accuracy is not None else ")"
        )
        trained_on = run.data.params.get("data.name")
        if trained_on not in DIGIT_DATASETS:
            log.warning(
                "warning: this model was trained on %s (%s), not on digits; its answers name %s classes",
                trained_on,
                DATASETS[trained_on].description if trained_on in DATASETS else "unknown data",
                trained_on,
            )
    return ModelChoice(uri=model_uri, description=description, model_input=model_input)


def load_images(paths: Sequence[str | Path], model_input: logged_models.ModelInput) -> np.ndarray:
    """The image files as one batch of model inputs; the first bad file is an error."""
    return np.stack(
        [images.prepare_image(path, model_input.shape, model_input.pixel_max, model_input.digit_box) for path in paths]
    )


def load_keras_model(model_uri: str):
    """The Keras model, loaded with Keras' safe mode on (no arbitrary code)."""
    runtime.import_keras()
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
        help=f"the best finished run (by {logged_models.RANK_METRIC}) with a model of this experiment",
    )
    which.add_argument("--model-uri", metavar="URI", help="an MLflow model URI, e.g. models:/<name>@champion")
    parser.add_argument(
        "--data",
        default=None,
        help=f"the data set of the model: the champion <data>-classifier if registered, else the best run; "
        f"default: {DEFAULT_DATASET}",
    )
    parser.add_argument("--uri", default=DEFAULT_TRACKING_URI, help="the MLflow tracking store (default: %(default)s)")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    try:
        choice = choose_model(args.uri, args.run, args.experiment, args.model_uri, args.data)
        log.info("model: %s", choice.description)
        table = predict_files(args.images, choice)
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return error.exit_code
    print(table.to_string(index=False, formatters={"probability": "{:.4f}".format}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
