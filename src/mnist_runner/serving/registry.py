"""Register the best run's model in the MLflow model registry.

    mnist-register                       # best run of experiment 'mnist'
    mnist-register --run <run id> --name my-model
    python predict.py digit.png --model-uri models:/mnist-classifier/latest

The registered model is named ``<data set>-classifier`` unless ``--name`` is
given (``mnist-classifier`` for MNIST runs), so every better run becomes a
new version of the same name. Registering the run that already is the latest
version adds no version. The version keeps the model's signature and links
to its run; ``models:/<name>/latest`` always means the newest version.
"""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Sequence

import mlflow
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from mnist_runner.config.schema import DEFAULT_EXPERIMENT
from mnist_runner.errors import UserError
from mnist_runner.paths import DEFAULT_TRACKING_URI
from mnist_runner.redaction import redact
from mnist_runner.serving import logged_models

log = logging.getLogger(__name__)

READY_TIMEOUT_S = 300


class RegistryError(UserError):
    """The registry refused or did not finish the registration."""


def default_name(data_name: str | None, experiment: str) -> str:
    return f"{data_name or experiment}-classifier"


def register(
    tracking_uri: str = DEFAULT_TRACKING_URI,
    experiment: str = DEFAULT_EXPERIMENT,
    name: str | None = None,
    run_id: str | None = None,
) -> ModelVersion:
    """Register the model of run ``run_id``, or of the best run of
    ``experiment``, under ``name``; wait until the version is READY."""
    client = logged_models.open_store(tracking_uri)
    if run_id:
        run, model = logged_models.run_with_model(client, run_id)
    else:
        run, model = logged_models.best_run(client, experiment)
    name = name or default_name(run.data.params.get("data.name"), experiment)
    latest = latest_version(client, name)
    if latest is not None and latest.run_id == run.info.run_id:
        log.info("run %s already is version %s of %r", run.info.run_id, latest.version, name)
        return latest
    accuracy = run.data.metrics.get(logged_models.RANK_METRIC)
    try:
        version = mlflow.register_model(
            model.model_uri,
            name,
            await_registration_for=READY_TIMEOUT_S,
            tags={"run_name": run.info.run_name, logged_models.RANK_METRIC: str(accuracy)},
        )
    except MlflowException as error:
        raise RegistryError(f"--name {name}: the registry refused model {model.model_uri} ({error})") from error
    if version.status != "READY":
        version = client.get_model_version(name, version.version)
    if version.status != "READY":
        raise RegistryError(f"--name {name}: version {version.version} is {version.status} ({version.status_message})")
    return version


def latest_version(client: MlflowClient, name: str) -> ModelVersion | None:
    """The newest version of registered model ``name``, or None if it has none."""
    try:
        versions = client.search_model_versions(f"name = '{name}'", max_results=10_000)
    except MlflowException:
        return None
    return max(versions, key=lambda v: int(v.version), default=None)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="mnist-register",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--experiment",
        default=DEFAULT_EXPERIMENT,
        help="take the best finished run with a model of this experiment (default: %(default)s)",
    )
    parser.add_argument("--run", metavar="RUN_ID", help="register this run's model instead")
    parser.add_argument("--name", help="registered model name (default: <data set>-classifier)")
    parser.add_argument("--uri", default=DEFAULT_TRACKING_URI, help="the MLflow tracking store (default: %(default)s)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    try:
        version = register(args.uri, args.experiment, args.name, args.run)
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return error.exit_code
    print(f"registered model {version.name!r} version {version.version} ({version.status}) from run {version.run_id}")
    store = "" if args.uri == DEFAULT_TRACKING_URI else f" --uri {redact(args.uri)}"
    print(f"use it: python predict.py IMAGE --model-uri models:/{version.name}/latest{store}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
