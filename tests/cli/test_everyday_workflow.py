"""The everyday workflow without training (issue 14): one experiment per data
set, the new tracking keys, the best run within one data set, predict's
choice and warning, ``mnist-runs``, quiet data-source fallbacks, the UI's
options, no stage-era registry API, and ``make help``.

The store tests share one SQLite store of hand-made runs: each run gets the
params and metrics the real ones have, and a small pyfunc model with a
signature, so nothing here imports TensorFlow or trains.
"""

from __future__ import annotations

import dataclasses
import io
import logging
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from helpers import TempStore
from hydra.errors import HydraException
from omegaconf.errors import OmegaConfBaseException

from mnist_runner.config import schema
from mnist_runner.datasets import DATASETS, sources
from mnist_runner.datasets.idx import idx_sha256
from mnist_runner.datasets.sources import SPLITS, SourceUnavailable
from mnist_runner.paths import PROJECT_ROOT
from mnist_runner.services import ui
from mnist_runner.serving import logged_models
from mnist_runner.serving.predict import choose_model
from mnist_runner.tracking import liveness, runs_cli, store

# --- config: one experiment per data set, the new keys ----------------------


@pytest.mark.parametrize("data", sorted(DATASETS))
def test_the_experiment_is_the_data_set_by_default(compose_cfg, data):
    cfg = compose_cfg(f"data={data}")
    assert cfg.tracking.experiment == data


def test_tracking_experiment_still_overrides_the_default(compose_cfg):
    assert compose_cfg("data=digits", "tracking.experiment=x").tracking.experiment == "x"


def test_defaults_of_the_new_keys(compose_cfg):
    cfg = compose_cfg()
    assert dict(cfg.tracking.tags) == {}
    assert cfg.tracking.description is None
    assert cfg.tracking.system_metrics is True
    assert cfg.tracking.system_metrics_interval == 10
    assert cfg.verbose is False
    schema.validate(cfg)


@pytest.mark.parametrize("interval", ["0.5", "0", "-3"])
def test_a_system_metrics_interval_under_one_second_is_refused(compose_cfg, interval):
    with pytest.raises(schema.ConfigError, match="tracking.system_metrics_interval.*at least 1"):
        schema.validate(compose_cfg(f"tracking.system_metrics_interval={interval}"))


def test_a_system_metrics_interval_of_one_second_is_allowed(compose_cfg):
    schema.validate(compose_cfg("tracking.system_metrics_interval=1", "tracking.system_metrics=false"))


@pytest.mark.parametrize(
    "overrides",
    [
        ["++tracking.tags={team: vision, ticket: ML-42}"],
        ["+tracking.tags.team=vision", "+tracking.tags.ticket=ML-42"],
    ],
)
def test_user_tags_are_set_with_plus_plus_or_one_plus_per_key(compose_cfg, overrides):
    cfg = compose_cfg(*overrides, 'tracking.description="first try"')
    assert dict(cfg.tracking.tags) == {"team": "vision", "ticket": "ML-42"}
    assert cfg.tracking.description == "first try"
    schema.validate(cfg)


@pytest.mark.parametrize("override", ["tracking.tags={team: vision}", "tracking.tags.team=vision"])
def test_plain_tags_override_is_refused_by_struct_mode(compose_cfg, override):
    # run.py then adds the hint (tests/cli/test_interrupt_and_quiet.py checks it).
    with pytest.raises((HydraException, OmegaConfBaseException)):
        compose_cfg(override)


def test_a_tag_value_longer_than_mlflow_keeps_is_refused(compose_cfg):
    with pytest.raises(schema.ConfigError, match="tracking.tags.note"):
        schema.validate(compose_cfg(f"+tracking.tags.note={'x' * 8001}"))


# --- a store of hand-made runs ----------------------------------------------


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


@pytest.fixture(scope="module")
def fake_store(tmp_path_factory) -> FakeStore:
    import warnings

    import mlflow
    from mlflow.models import ModelSignature
    from mlflow.types import Schema, TensorSpec

    fake = FakeStore(tmp_path_factory.mktemp("fake_store"))
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


def test_experiments_open_in_the_model_training_view(fake_store):
    client = fake_store.client()
    for name in ("mixed", "digits", "fashion_mnist"):
        assert client.get_experiment_by_name(name).tags.get("mlflow.experimentKind") == "custom_model_development"


def test_best_run_of_a_data_set_experiment_keeps_to_that_data_set(fake_store):
    run, model = logged_models.best_run(fake_store.client(), "digits")
    assert run.info.run_id == fake_store.ids["digits-best"]  # not the better mnist run, not the run without a model
    assert model.source_run_id == run.info.run_id


def test_best_run_of_a_mixed_experiment_needs_the_data_set(fake_store):
    with pytest.raises(logged_models.ModelNotFound) as refused:
        logged_models.best_run(fake_store.client(), "mixed")
    assert "digits, mnist" in str(refused.value) and "--data" in str(refused.value)


@pytest.mark.parametrize(("data", "label"), [("digits", "mixed-digits"), ("mnist", "mixed-mnist")])
def test_best_run_of_a_mixed_experiment_for_one_data_set(fake_store, data, label):
    run, _ = logged_models.best_run(fake_store.client(), "mixed", data=data)
    assert run.info.run_id == fake_store.ids[label]


def test_predict_takes_the_best_run_when_no_champion_is_registered(fake_store, caplog):
    with caplog.at_level(logging.WARNING):
        choice = choose_model(fake_store.uri, data="digits")
    assert fake_store.ids["digits-best"] in choice.description
    assert choice.model_input.shape == (8, 8) and choice.model_input.pixel_max == 16
    assert "not on digits" not in caplog.text


def test_predict_warns_when_the_model_was_not_trained_on_digits(fake_store, caplog):
    with caplog.at_level(logging.WARNING):
        choice = choose_model(fake_store.uri, data="fashion_mnist")
    assert fake_store.ids["fashion"] in choice.description
    warned = [r for r in caplog.records if r.levelno == logging.WARNING and "fashion_mnist" in r.getMessage()]
    assert warned and "not on digits" in warned[0].getMessage()


# --- mnist-runs ---------------------------------------------------------------


def list_runs(fake_store, capsys, experiment: str, runs: list[tuple[str, dict]]) -> list[str]:
    """``mnist-runs list`` of a new experiment holding ``runs`` (name, params), as lines."""
    import mlflow

    experiment_id = store.connect(fake_store.uri, experiment, str(fake_store.artifacts))
    for name, params in runs:
        with mlflow.start_run(experiment_id=experiment_id, run_name=name):
            mlflow.log_params({"data.name": name.partition("-")[2], "trainer.seed": "42", **params})
            mlflow.log_metrics({"test_accuracy": 0.987654, "final_overfit_gap": -0.012345})
    assert runs_cli.main(["--uri", fake_store.uri, "list", "--experiment", experiment]) == 0
    before = capsys.readouterr().out
    # The store option after the command too, as `mnist-runs list --uri ...` is typed.
    assert runs_cli.main(["list", "--uri", fake_store.uri, "--experiment", experiment]) == 0
    assert capsys.readouterr().out == before
    return before.splitlines()


def test_runs_list_shows_the_runs_within_100_columns(fake_store, capsys):
    lines = list_runs(
        fake_store,
        capsys,
        "listing",
        [
            ("convnet-mnist", {"model.name": "convnet", "data.train_samples": "60000", "trainer.epochs": "15"}),
            ("dense-mnist", {"model.name": "dense", "model.dropout": "0.25", "trainer.epochs": "10"}),
        ],
    )
    assert len(lines) == 3  # header and two runs, newest first
    assert lines[0].split() == [
        "run_id", "name", "status", "started", "model", "samples", "epochs", "dropout", "seed", "test_acc", "gap"
    ]  # fmt: skip
    assert lines[1].split()[1:3] == ["dense-mnist", "FINISHED"] and " all " in lines[1]  # no train_samples: all
    assert "convnet" in lines[2] and "60000" in lines[2] and "0.9877" in lines[2] and "-0.0123" in lines[2]
    assert max(len(line) for line in lines) <= 100, "\n".join(lines)


def test_runs_list_of_fashion_mnist_runs_fits_100_columns(fake_store, capsys):
    lines = list_runs(
        fake_store,
        capsys,
        "listing_fashion",
        [("dense-fashion_mnist", {"model.name": "dense", "data.train_samples": "10000", "trainer.epochs": "10"})],
    )
    assert max(len(line) for line in lines) <= 100, "\n".join(lines)


def test_runs_list_cuts_run_ids_and_names():
    import pandas as pd

    table = pd.DataFrame(
        {"run_id": ["0123456789abcdef0123456789abcdef"], "name": ["a-run-name-of-thirty-characters"], "test_acc": [0.5]}
    )
    shown = runs_cli.show(table).splitlines()[1].split()
    assert shown[:2] == ["01234567", "a-run-name-of-"]
    assert runs_cli.show(table.iloc[0:0]) == "no runs"


def test_runs_list_limit_and_unknown_experiment(fake_store, capsys):
    assert runs_cli.main(["--uri", fake_store.uri, "list", "--experiment", "digits", "--limit", "2"]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 3
    assert runs_cli.main(["--uri", fake_store.uri, "list", "--experiment", "nope"]) == 2
    assert "no such experiment" in capsys.readouterr().err


def trash_run(fake_store, tags=None) -> str:
    experiment_id = store.connect(fake_store.uri, "trash", str(fake_store.artifacts))
    client = fake_store.client()
    run = client.create_run(experiment_id, tags=tags or {}, run_name="to-delete")
    client.log_text(run.info.run_id, "kept until purged", "note.txt")
    return run.info.run_id


def test_delete_moves_runs_to_the_trash(fake_store, capsys):
    client = fake_store.client()
    run_ids = [trash_run(fake_store), trash_run(fake_store)]
    for run_id in run_ids:
        client.set_terminated(run_id, "FINISHED")

    assert runs_cli.main(["--uri", fake_store.uri, "delete", *run_ids, "--yes"]) == 0
    assert "2 run(s) moved to the trash" in capsys.readouterr().out
    for run_id in run_ids:
        run = client.get_run(run_id)  # still there, restorable
        assert run.info.lifecycle_stage == "deleted"
        assert client.download_artifacts(run_id, "note.txt")
    client.restore_run(run_ids[0])
    assert client.get_run(run_ids[0]).info.lifecycle_stage == "active"


def test_delete_refuses_a_run_whose_process_is_alive(fake_store, capsys):
    client = fake_store.client()
    run_id = trash_run(fake_store, tags=liveness.process_tags())  # RUNNING, by this very process
    try:
        assert runs_cli.main(["--uri", fake_store.uri, "delete", run_id, "--yes"]) == 2
        assert "still training" in capsys.readouterr().err
        assert client.get_run(run_id).info.lifecycle_stage == "active"
    finally:
        client.set_terminated(run_id, "KILLED")
    assert runs_cli.main(["--uri", fake_store.uri, "delete", run_id, "--yes"]) == 0  # ended: it may go


def test_delete_asks_first_and_wants_yes_without_a_terminal(fake_store, capsys, monkeypatch):
    client = fake_store.client()
    run_id = trash_run(fake_store)
    client.set_terminated(run_id, "FINISHED")

    monkeypatch.setattr(sys, "stdin", io.StringIO(""))  # not a terminal
    assert runs_cli.main(["--uri", fake_store.uri, "delete", run_id]) == 2
    assert "--yes" in capsys.readouterr().err

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    monkeypatch.setattr(sys, "stdin", Terminal(""))
    monkeypatch.setattr("builtins.input", lambda prompt: "n")
    assert runs_cli.main(["--uri", fake_store.uri, "delete", run_id]) == 0
    assert "nothing deleted" in capsys.readouterr().out
    assert client.get_run(run_id).info.lifecycle_stage == "active"


@pytest.mark.slow  # `mlflow gc` runs as a subprocess
def test_delete_purge_removes_the_run_and_its_artifacts(fake_store, capsys):
    from mlflow.exceptions import MlflowException

    client = fake_store.client()
    run_id = trash_run(fake_store)
    client.set_terminated(run_id, "FINISHED")
    artifact_dir = client.get_run(run_id).info.artifact_uri.removeprefix("file://")
    assert (Path(artifact_dir) / "note.txt").is_file()

    assert runs_cli.main(["--uri", fake_store.uri, "delete", run_id, "--purge", "--yes"]) == 0
    assert "1 run(s) deleted for good" in capsys.readouterr().out
    with pytest.raises(MlflowException):
        client.get_run(run_id)
    assert not (Path(artifact_dir) / "note.txt").exists()


# --- quiet: data-source fallbacks read as progress; the UI's server ----------


def test_a_data_source_without_the_data_is_progress_not_a_warning(tmp_path, monkeypatch, caplog):
    rng = np.random.default_rng(0)
    arrays = {
        "x_train": rng.integers(0, 256, size=(20, 28, 28), dtype=np.uint8),
        "y_train": (np.arange(20) % 10).astype(np.uint8),
        "x_test": rng.integers(0, 256, size=(10, 28, 28), dtype=np.uint8),
        "y_test": (np.arange(10) % 10).astype(np.uint8),
    }
    spec = dataclasses.replace(
        sources.MNIST,
        name="synthetic",
        sha256={split: idx_sha256(arrays[split]) for split in SPLITS},
        fallback=lambda: arrays,
        fallback_name="test fallback",
    )
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras_home"))

    def offline(spec):
        raise SourceUnavailable("offline in tests")

    monkeypatch.setattr(sources, "from_keras_download", offline)
    with caplog.at_level(logging.INFO, logger=sources.__name__):
        _, source, _ = sources.load_verified(spec, None, tmp_path / "cache")

    assert source == "test fallback"
    progress = [r.getMessage() for r in caplog.records if "has none" in r.getMessage()]
    assert len(progress) == 3, caplog.text
    assert re.fullmatch(r"synthetic: cache .*synthetic\.npz has none \(.*not found\); trying keras cache", progress[0])
    assert progress[-1] == "synthetic: keras download has none (offline in tests); trying test fallback"
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


def test_the_ui_server_logs_warnings_only():
    command = ui.server_command("sqlite:////tmp/x/mlflow.db", 5000)
    at = command.index("--uvicorn-opts")
    assert command[at + 1] == "--log-level warning"


# --- no stage-era registry API; make help ------------------------------------

STAGE_ERA = re.compile(r"transition_model_version_stage|get_latest_versions|models:/[^\s\"'`@)]+/latest")


def test_no_stage_era_registry_api_in_the_code_or_docs():
    files = [
        *(PROJECT_ROOT / "src").rglob("*.py"),
        PROJECT_ROOT / "predict.py",
        PROJECT_ROOT / "run.py",
        PROJECT_ROOT / "Makefile",
        PROJECT_ROOT / "README.md",
        *(PROJECT_ROOT / "docs").glob("*.md"),
    ]
    found = [
        f"{path.relative_to(PROJECT_ROOT)}: {m.group(0)}"
        for path in files
        for m in STAGE_ERA.finditer(path.read_text())
    ]
    assert not found


def test_the_stage_era_pattern_catches_what_it_should():
    for text in (
        "models:/mnist-classifier/latest",
        "client.get_latest_versions(name)",
        "transition_model_version_stage(",
    ):
        assert STAGE_ERA.search(text)
    assert not STAGE_ERA.search("models:/mnist-classifier@champion")


def makefile_targets() -> tuple[set[str], set[str]]:
    """Every target the Makefile defines, and those ``make help`` lists (its
    recipe's pattern, read from the Makefile itself)."""
    text = (PROJECT_ROOT / "Makefile").read_text()
    defined = set(re.findall(r"^([a-z0-9][a-z0-9_-]*):(?!=)", text, flags=re.MULTILINE))
    pattern = re.search(r"@grep -E '([^']+)' \$\(MAKEFILE_LIST\)", text).group(1)
    listed = {line.split(":", 1)[0] for line in text.splitlines() if re.search(pattern, line)}
    return defined, listed


def test_make_help_lists_every_target():
    defined, listed = makefile_targets()
    assert {"runs", "delete-runs", "register", "predict", "ui"} <= defined
    assert defined == listed, f"without a '## ' description: {sorted(defined - listed)}"


@pytest.mark.slow  # starts make
def test_make_help_output_names_every_target():
    done = subprocess.run(["make", "-s", "help"], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    shown = {line.split()[1] for line in done.stdout.splitlines() if line.strip().startswith("make ")}
    assert shown == makefile_targets()[0]
