"""Finding a trained model in the MLflow store: the best run of an
experiment, the model a run logged, and the input a model expects.

Shared by ``predict`` and ``registry``; imports no TensorFlow.
"""

from __future__ import annotations

from dataclasses import dataclass

import mlflow
from mlflow.entities import LoggedModel, LoggedModelStatus, Run
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from mnist_runner.datasets import DATASETS
from mnist_runner.errors import UserError
from mnist_runner.redaction import redact
from mnist_runner.tracking import store

RANK_METRIC = "test_accuracy"


class ModelNotFound(UserError):
    """No store, run, experiment or model where the user pointed."""


@dataclass(frozen=True)
class ModelInput:
    """What a model takes: raw images of ``shape`` with values 0..``pixel_max``."""

    shape: tuple[int, ...]
    pixel_max: int
    digit_box: float = 20 / 28  # how much of the field a digit fills (see datasets.catalog)


def open_store(uri: str) -> MlflowClient:
    """A client of the existing store at ``uri`` (see ``tracking.store.open_existing``)."""
    return store.open_existing(uri)


def best_run(client: MlflowClient, experiment: str, data: str | None = None) -> tuple[Run, LoggedModel]:
    """The FINISHED run of ``experiment`` trained on data set ``data`` with a
    logged model and the highest test accuracy, and its model.

    Accuracies of different data sets do not compare: without ``data`` the
    experiment's own name is taken when it names a data set (each data set
    logs into its own experiment by default), and an experiment holding runs
    of several data sets needs ``data``."""
    found = client.get_experiment_by_name(experiment)
    if found is None:
        known = [e.name for e in client.search_experiments()]
        raise ModelNotFound(
            f"--experiment {experiment}: no such experiment in {redact(client.tracking_uri)}; known: {known}"
        )
    models = {m.source_run_id: m for m in logged_models(client, found.experiment_id)}
    # A run without the metric (a sweep's parent run) is no candidate.
    runs = client.search_runs(
        [found.experiment_id],
        f"attributes.status = 'FINISHED' and metrics.{RANK_METRIC} >= 0",
        order_by=[f"metrics.{RANK_METRIC} DESC", "attributes.start_time DESC"],
        max_results=50_000,
    )
    with_model = [run for run in runs if run.info.run_id in models]
    data = data or (experiment if experiment in DATASETS else None)
    kinds = sorted({run.data.params.get("data.name", "?") for run in with_model})
    if data is None and len(kinds) > 1:
        raise ModelNotFound(
            f"--experiment {experiment}: it holds models of several data sets ({', '.join(kinds)}), whose "
            "accuracies do not compare; choose one with --data"
        )
    for run in with_model:
        if data is None or run.data.params.get("data.name") == data:
            return run, models[run.info.run_id]
    of_data = f" trained on {data}" if data else ""
    raise ModelNotFound(
        f"--experiment {experiment}: none of its {len(runs)} finished runs logged a model{of_data} "
        "(runs with tracking.log_model=false have none); train one: python run.py"
    )


def run_with_model(client: MlflowClient, run_id: str) -> tuple[Run, LoggedModel]:
    """The run ``run_id`` and the model it logged."""
    try:
        run = client.get_run(run_id)
    except MlflowException as error:
        raise ModelNotFound(f"--run {run_id}: no such run in {redact(client.tracking_uri)}") from error
    models = [m for m in logged_models(client, run.info.experiment_id) if m.source_run_id == run_id]
    if not models:
        raise ModelNotFound(
            f"--run {run_id}: the run ({run.info.run_name}, {run.info.status}) has no logged model; "
            "it was run with tracking.log_model=false or did not finish"
        )
    return run, models[-1]


def logged_models(client: MlflowClient, experiment_id: str) -> list[LoggedModel]:
    """The finished (READY) models logged in an experiment, every page."""
    models, token = [], None
    while True:
        page = client.search_logged_models([experiment_id], page_token=token)
        models.extend(m for m in page if m.status == LoggedModelStatus.READY)
        token = page.token
        if not token:
            return models


def model_input(client: MlflowClient, model_uri: str) -> tuple[ModelInput, str | None]:
    """What the model at ``model_uri`` takes, and the id of the run that
    trained it: the shape from its signature, the pixel range from that run's
    ``data.name``."""
    try:
        info = mlflow.models.get_model_info(model_uri)
    except (MlflowException, OSError) as error:
        raise ModelNotFound(f"--model-uri {model_uri}: no model there ({error})") from error
    if info.signature is None or not info.signature.inputs.inputs:
        raise ModelNotFound(f"--model-uri {model_uri}: the model has no input signature")
    spec = info.signature.inputs.inputs[0]
    shape = tuple(int(size) for size in spec.shape[1:])
    data_name = client.get_run(info.run_id).data.params.get("data.name") if info.run_id else None
    if data_name not in DATASETS:
        raise ModelNotFound(
            f"--model-uri {model_uri}: its run ({info.run_id}) has data.name={data_name!r}, so the pixel "
            f"range is unknown; models trained by this project on {list(DATASETS)} have one"
        )
    info_ = DATASETS[data_name]
    return ModelInput(shape=shape, pixel_max=info_.pixel_max, digit_box=info_.digit_box), info.run_id
