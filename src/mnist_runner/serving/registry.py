"""Register the best run's model in the MLflow model registry, as the champion.

    mnist-register                                   # best MNIST run
    mnist-register --experiment digits               # best run of experiment 'digits'
    mnist-register --run <run id> --name my-model
    python predict.py digit.png --model-uri models:/mnist-classifier@champion

The registered model is named ``<data set>-classifier`` unless ``--name`` is
given, and its alias ``@champion`` (MLflow's aliases replace the deprecated
stages) names the version with the best test accuracy. A candidate that beats
the champion becomes a new version and takes the alias; one that does not
is not registered, and the command says by how much it falls short. The
version keeps the model's signature, links to its run, and has the run's
model card as its description.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from dataclasses import dataclass
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
CHAMPION = "champion"


class RegistryError(UserError):
    """The registry refused or did not finish the registration."""


@dataclass(frozen=True)
class Outcome:
    """What ``register`` did: ``version`` is the champion afterwards; ``promoted``
    whether the candidate became it; ``shortfall`` by how much it fell short."""

    version: ModelVersion | None
    promoted: bool
    candidate_run_id: str
    candidate_accuracy: float
    champion_accuracy: float | None = None

    @property
    def already_champion(self) -> bool:
        return not self.promoted and self.version is not None and self.version.run_id == self.candidate_run_id

    @property
    def shortfall(self) -> float | None:
        if self.promoted or self.already_champion or self.champion_accuracy is None:
            return None
        return self.champion_accuracy - self.candidate_accuracy


def default_name(data_name: str | None, experiment: str) -> str:
    return f"{data_name or experiment}-classifier"


def champion(client: MlflowClient, name: str) -> ModelVersion | None:
    """The version of registered model ``name`` with the alias ``@champion``, if any."""
    try:
        return client.get_model_version_by_alias(name, CHAMPION)
    except MlflowException:
        return None


def accuracy_of(client: MlflowClient, version: ModelVersion) -> float:
    tagged = version.tags.get(logged_models.RANK_METRIC)
    if tagged is not None:
        return float(tagged)
    return float(client.get_run(version.run_id).data.metrics[logged_models.RANK_METRIC])


def register(
    tracking_uri: str = DEFAULT_TRACKING_URI,
    experiment: str = DEFAULT_EXPERIMENT,
    name: str | None = None,
    run_id: str | None = None,
    data: str | None = None,
) -> Outcome:
    """Register the model of run ``run_id``, or of the best run of
    ``experiment`` (of data set ``data``), under ``name`` and give it the
    alias ``@champion`` if it beats the current champion's test accuracy."""
    client = logged_models.open_store(tracking_uri)
    if run_id:
        run, model = logged_models.run_with_model(client, run_id)
    else:
        run, model = logged_models.best_run(client, experiment, data)
    name = name or default_name(run.data.params.get("data.name"), experiment)
    accuracy = float(run.data.metrics[logged_models.RANK_METRIC])
    current = champion(client, name)
    if current is not None:
        current_accuracy = accuracy_of(client, current)
        if current.run_id == run.info.run_id:
            log.info("run %s already is the champion, version %s of %r", run.info.run_id, current.version, name)
            return Outcome(current, False, run.info.run_id, accuracy, current_accuracy)
        if accuracy <= current_accuracy:
            return Outcome(current, False, run.info.run_id, accuracy, current_accuracy)
    version = new_version(client, name, run, model, accuracy)
    client.set_registered_model_alias(name, CHAMPION, version.version)
    return Outcome(
        client.get_model_version(name, version.version),
        True,
        run.info.run_id,
        accuracy,
        None if current is None else accuracy_of(client, current),
    )


def new_version(client: MlflowClient, name: str, run, model, accuracy: float) -> ModelVersion:
    """A READY version of ``name`` for the run's model, described by its model card."""
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
    card = model_card(run.info.run_id)
    if card:
        client.update_model_version(name, version.version, description=card)
    return version


def model_card(run_id: str) -> str | None:
    try:
        return mlflow.artifacts.load_text(f"runs:/{run_id}/model_card.md")
    except (MlflowException, OSError):  # a run logged before model cards existed
        return None


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
    parser.add_argument("--data", help="only runs of this data set (default: the experiment's name, if it is one)")
    parser.add_argument("--run", metavar="RUN_ID", help="register this run's model instead")
    parser.add_argument("--name", help="registered model name (default: <data set>-classifier)")
    parser.add_argument("--uri", default=DEFAULT_TRACKING_URI, help="the MLflow tracking store (default: %(default)s)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # the model card's download
    try:
        outcome = register(args.uri, args.experiment, args.name, args.run, args.data)
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return error.exit_code
    version = outcome.version
    if outcome.promoted:
        print(
            f"registered model {version.name!r} version {version.version} from run {version.run_id} "
            f"(test_accuracy {outcome.candidate_accuracy:.4f}) as @{CHAMPION}"
        )
    elif outcome.shortfall is not None:
        print(
            f"run {outcome.candidate_run_id} (test_accuracy {outcome.candidate_accuracy:.4f}) falls short of "
            f"{version.name}@{CHAMPION}, version {version.version} ({outcome.champion_accuracy:.4f}), by "
            f"{outcome.shortfall:.4f}: not registered"
        )
    else:
        print(f"run {outcome.candidate_run_id} already is {version.name}@{CHAMPION} (version {version.version})")
    store = "" if args.uri == DEFAULT_TRACKING_URI else f" --uri {redact(args.uri)}"
    print(f"use it: python predict.py IMAGE --model-uri models:/{version.name}@{CHAMPION}{store}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
