"""MLflow-native runs (issue 14), on three small digits runs trained once for
the module with ``mnist_runner.train``: the experiment of the data set, the
data sets as run inputs, system metrics, the logged model with its test
metrics, the model summary and card, user tags and the description, the
``@champion`` alias, predict's choice of model, and ``mnist-runs list``.
"""

from __future__ import annotations

import contextlib
import io
import logging
import re
from dataclasses import dataclass

import pytest

from mnist_runner import train
from mnist_runner.serving import logged_models, registry
from mnist_runner.serving.predict import choose_model
from mnist_runner.tracking import runs_cli

pytestmark = pytest.mark.slow

DESCRIPTION = "first try: 600 samples"


@dataclass
class Trained:
    uri: str
    store: object  # TempStore
    runs: dict  # label -> RunResult
    printed: dict  # label -> what train() printed

    def run(self, label):
        return self.store.client().get_run(self.runs[label].run_id)


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Trained:
    """small: 2 epochs on 600 samples, system metrics every second, user tags
    and a description; better: 3 epochs on all samples at a higher learning
    rate, system metrics off; no_model: 1 epoch, tracking.log_model=false,
    system metrics off."""
    from helpers import TempStore

    tmp_store = TempStore(tmp_path_factory.mktemp("digits_runs"))
    settings = {
        "small": [
            "trainer.epochs=2",
            "data.train_samples=600",
            "tracking.system_metrics_interval=1",
            "++tracking.tags={team: vision, ticket: ML-42}",
            f"tracking.description={DESCRIPTION!r}",
        ],
        "better": [
            "trainer.epochs=3",
            "trainer.learning_rate=0.002",
            "tracking.system_metrics=false",
            "tracking.system_metrics_interval=1",  # off must mean off, even at a 1 s interval
            "+tracking.tags.team=vision",
        ],
        "no_model": [
            "trainer.epochs=1",
            "tracking.log_model=false",
            "tracking.system_metrics=false",
            "tracking.system_metrics_interval=1",
        ],
    }
    runs, printed = {}, {}
    for label, overrides in settings.items():
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            runs[label] = train(["data=digits", *overrides, *tmp_store.overrides()])
        printed[label] = out.getvalue()
    accuracy = {label: result.metrics["test_accuracy"] for label, result in runs.items()}
    assert accuracy["better"] > accuracy["small"], accuracy  # what the registry tests rely on
    return Trained(tmp_store.uri, tmp_store, runs, printed)


# --- one experiment per data set ----------------------------------------------


def test_digits_runs_land_in_experiment_digits(trained):
    client = trained.store.client()
    experiment = client.get_experiment_by_name("digits")
    assert experiment is not None
    assert experiment.tags.get("mlflow.experimentKind") == "custom_model_development"
    assert {trained.run(label).info.experiment_id for label in trained.runs} == {experiment.experiment_id}
    assert client.get_experiment_by_name("mnist") is None


# --- data sets as run inputs ----------------------------------------------------


def datasets_of(run) -> dict[str, object]:
    """context -> MLflow dataset of the run's inputs."""
    found = {}
    for dataset_input in run.inputs.dataset_inputs:
        context = {tag.key: tag.value for tag in dataset_input.tags}["mlflow.data.context"]
        assert context not in found, f"{context} logged twice"
        found[context] = dataset_input.dataset
    return found


def test_train_validation_and_test_data_are_the_run_inputs(trained):
    inputs = datasets_of(trained.run("small"))
    assert set(inputs) == {"train", "validation", "test"}
    for dataset in inputs.values():
        assert dataset.name == "digits"
        assert re.fullmatch(r"[0-9a-f]{16}", dataset.digest)
        assert "load_digits" in dataset.source
    assert len({dataset.digest for dataset in inputs.values()}) == 3


def test_the_digests_follow_the_split_settings_not_the_test_set(trained):
    small, better = datasets_of(trained.run("small")), datasets_of(trained.run("better"))
    assert small["train"].digest != better["train"].digest  # 600 samples vs all
    assert small["validation"].digest != better["validation"].digest
    assert small["test"].digest == better["test"].digest
    no_model = datasets_of(trained.run("no_model"))  # same split as 'better', other training settings
    assert no_model["train"].digest == better["train"].digest


# --- system metrics -------------------------------------------------------------


def test_system_metrics_are_sampled_at_the_interval(trained):
    run = trained.run("small")
    system = {key for key in run.data.metrics if key.startswith("system/")}
    assert {"system/cpu_utilization_percentage", "system/system_memory_usage_megabytes"} <= system, system
    assert run.data.params["tracking.system_metrics_interval"] == "1.0"


def test_no_system_metrics_when_switched_off(trained):
    for label in ("better", "no_model"):
        run = trained.run(label)
        assert not [key for key in run.data.metrics if key.startswith("system/")], label


# --- the logged model carries its results ----------------------------------------


def test_test_metrics_are_linked_to_the_logged_model_and_test_data(trained):
    client = trained.store.client()
    experiment_id = client.get_experiment_by_name("digits").experiment_id
    models = {m.source_run_id: m for m in client.search_logged_models([experiment_id])}
    assert trained.runs["no_model"].run_id not in models
    for label in ("small", "better"):
        result = trained.runs[label]
        model = models[result.run_id]
        linked = {m.key: m for m in model.metrics if m.key.startswith("test_")}
        assert set(linked) == {"test_accuracy", "test_loss", *(f"test_class_accuracy/{k}" for k in range(10))}
        assert linked["test_accuracy"].value == pytest.approx(result.metrics["test_accuracy"])
        assert linked["test_accuracy"].dataset_name == "digits"
        assert linked["test_accuracy"].dataset_digest == datasets_of(trained.run(label))["test"].digest


def artifact_text(trained, label, path) -> str:
    import mlflow

    mlflow.set_tracking_uri(trained.uri)
    return mlflow.artifacts.load_text(f"runs:/{trained.runs[label].run_id}/{path}")


@pytest.mark.parametrize("label", ["small", "no_model"])
def test_model_card_describes_architecture_data_and_results(trained, label):
    result = trained.runs[label]
    card = artifact_text(trained, label, "model_card.md")
    params = trained.run(label).data.params
    assert card.startswith("# dense on digits")
    assert f"{int(params['derived.parameters']):,} parameters" in card
    assert "Dense" in card and "Rescaling" in card  # the layers
    assert f"{int(params['derived.train_samples']):,} training images" in card
    assert f"{int(params['derived.test_samples']):,} for the test" in card
    assert f"test accuracy {result.metrics['test_accuracy']:.4f}" in card


@pytest.mark.parametrize("label", ["small", "no_model"])
def test_model_summary_is_keras_layer_table(trained, label):
    summary = artifact_text(trained, label, "model_summary.txt")
    assert "Layer (type)" in summary and "class_probabilities (Dense)" in summary
    assert "Total params" in summary


def test_model_summary_shows_each_layers_parameter_count(trained):
    summary = artifact_text(trained, "small", "model_summary.txt")
    assert "Param #" in summary


def test_the_model_card_is_the_logged_models_description(trained):
    client = trained.store.client()
    model = logged_models.run_with_model(client, trained.runs["small"].run_id)[1]
    assert model.tags.get("mlflow.note.content") == artifact_text(trained, "small", "model_card.md")


# --- user tags and description ---------------------------------------------------


def test_user_tags_and_description_are_on_the_run(trained):
    small, better = trained.run("small"), trained.run("better")
    assert small.data.tags["team"] == "vision" and small.data.tags["ticket"] == "ML-42"
    assert small.data.tags["mlflow.note.content"] == DESCRIPTION
    assert better.data.tags["team"] == "vision" and "ticket" not in better.data.tags
    assert "mlflow.note.content" not in better.data.tags
    assert small.data.tags["data"] == "digits" and small.data.tags["model"] == "dense"  # the runner's own tags stay


# --- train() prints what run.py prints ------------------------------------------------


def test_train_prints_the_summary_line(trained):
    result = trained.runs["better"]
    metrics = result.metrics
    printed = trained.printed["better"]
    assert (
        f"test_accuracy={metrics['test_accuracy']:.4f}  final_overfit_gap={metrics['final_overfit_gap']:+.4f}  "
        f"best val_accuracy={metrics['best_val_accuracy']:.4f} at epoch {metrics['best_epoch']}"
    ) in printed
    assert f"MLflow run {result.run_id} (experiment 'digits'); open it: " in printed


# --- mnist-runs list on real runs -----------------------------------------------------


def test_runs_list_shows_the_trained_runs(trained, capsys):
    assert runs_cli.main(["--uri", trained.uri, "list", "--experiment", "digits"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 4
    assert max(len(line) for line in lines) <= 100
    newest_first = [trained.runs[label].run_id[:8] for label in ("no_model", "better", "small")]
    assert [line.split()[0] for line in lines[1:]] == newest_first
    small = lines[3].split()
    assert small[1:3] == ["dense-digits", "FINISHED"] and "600" in small
    assert f"{trained.runs['small'].metrics['test_accuracy']:.4f}" in small


# --- the registry's @champion and predict's choice -------------------------------------


def test_champion_alias_goes_only_to_a_better_model(trained, capsys, caplog):
    small, better = trained.runs["small"], trained.runs["better"]
    client = trained.store.client()
    name = "digits-classifier"

    # Nothing registered: predict takes the best run of the data set.
    choice = choose_model(trained.uri, data="digits")
    assert choice.uri == logged_models.run_with_model(client, better.run_id)[1].model_uri

    # The first candidate becomes the champion, described by its model card.
    first = registry.register(trained.uri, "digits", run_id=small.run_id)
    assert first.promoted and str(first.version.version) == "1" and first.champion_accuracy is None
    assert client.get_model_version_by_alias(name, "champion").run_id == small.run_id
    assert client.get_model_version(name, "1").description == artifact_text(trained, "small", "model_card.md")

    # The best run beats it and takes the alias.
    second = registry.register(trained.uri, "digits")
    assert second.promoted and second.candidate_run_id == better.run_id
    assert second.champion_accuracy == pytest.approx(small.metrics["test_accuracy"])
    assert str(client.get_model_version_by_alias(name, "champion").version) == str(second.version.version) == "2"

    # A worse candidate is not registered; the command says by how much it falls short.
    assert registry.main(["--experiment", "digits", "--run", small.run_id, "--uri", trained.uri]) == 0
    out = capsys.readouterr().out
    shortfall = better.metrics["test_accuracy"] - small.metrics["test_accuracy"]
    assert f"falls short of {name}@champion, version 2" in out and f"by {shortfall:.4f}: not registered" in out
    assert f"models:/{name}@champion" in out
    assert len(client.search_model_versions(f"name = '{name}'")) == 2
    assert client.get_model_version_by_alias(name, "champion").run_id == better.run_id

    # The champion again: no new version.
    again = registry.register(trained.uri, "digits", run_id=better.run_id)
    assert not again.promoted and again.version.run_id == better.run_id
    assert len(client.search_model_versions(f"name = '{name}'")) == 2

    # Predict now takes the champion, and says which run it is; digits: no warning.
    with caplog.at_level(logging.WARNING):
        choice = choose_model(trained.uri, data="digits")
    assert choice.uri == f"models:/{name}@champion"
    assert better.run_id in choice.description
    assert "not on digits" not in caplog.text


def test_registering_the_champion_again_says_it_already_is(trained, capsys):
    better = trained.runs["better"].run_id
    registry.register(trained.uri, "digits", run_id=better)  # the champion now, whatever came before
    capsys.readouterr()
    assert registry.main(["--experiment", "digits", "--run", better, "--uri", trained.uri]) == 0
    out = capsys.readouterr().out
    assert f"run {better} already is digits-classifier@champion" in out, out
