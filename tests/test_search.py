"""Hyperparameter search: the Optuna sweeper on a tiny data set, resumed once."""

import os
import subprocess
import sys

import optuna
import pytest

from hydra_plugins.mnist_runner_search import _impl as search
from mnist_runner.errors import RunPruned
from mnist_runner.paths import PROJECT_ROOT


def test_search_space_from_hydra_sweep_syntax():
    space, fixed = search.search_space(
        {"trainer.learning_rate": "tag(log, interval(0.0001, 0.01))", "trainer.batch_size": "choice(64, 128)"},
        ["model.dropout=interval(0.0, 0.5)", "trainer.epochs=3", "trainer.batch_size=256"],
    )
    assert space["trainer.learning_rate"] == optuna.distributions.FloatDistribution(0.0001, 0.01, log=True)
    assert space["model.dropout"] == optuna.distributions.FloatDistribution(0.0, 0.5)
    assert "trainer.batch_size" not in space  # the command line fixed it
    assert fixed == ["trainer.epochs=3", "trainer.batch_size=256"]


def test_objectives():
    metrics = {"best_val_accuracy": 0.97, "final_overfit_gap": 0.02}
    assert search.objective_values("val_accuracy", metrics) == [0.97]
    assert search.objective_values("val_accuracy_and_gap", metrics) == [0.97, 0.02]
    assert search.objective_values("val_accuracy", None) is None
    assert search.objective_values("val_accuracy", {"pruned": True}) is None


def test_pruning_reporter_reports_and_prunes(tmp_path):
    from mnist_runner.sweeps.pruning import PruningReporter

    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    # A pruner that prunes anything below 2.0: every accuracy.
    pruner = optuna.pruners.ThresholdPruner(lower=2.0)
    study = optuna.create_study(storage=storage, study_name="s", direction="maximize", pruner=pruner)
    trial = study.ask()
    reporter = PruningReporter(storage, "s", trial.number, pruner)
    with pytest.raises(RunPruned, match="pruned by the search after epoch 1"):
        reporter.on_epoch_end(0, {"val_accuracy": 0.5})
    assert study.trials[0].intermediate_values == {1: 0.5}


def run_search(store, n_trials, *overrides):
    command = [
        sys.executable,
        str(PROJECT_ROOT / "run.py"),
        "-m",
        "hydra/sweeper=optuna_search",
        f"hydra.sweeper.n_trials={n_trials}",
        f"hydra.sweeper.storage=sqlite:///{store.root / 'optuna.db'}",
        "hydra.sweeper.study_name=tiny",
        "trainer.learning_rate=tag(log, interval(0.000001, 0.05))",
        "trainer.optimizer=choice(adam, rmsprop)",
        "data=digits",
        "trainer.epochs=3",
        "tracking.log_model=false",
        *overrides,
        *store.overrides(sweep_dir=f"sweep{n_trials}"),
    ]
    done = subprocess.run(
        command, capture_output=True, text=True, timeout=600, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    )
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]


@pytest.mark.e2e
def test_search_runs_trials_as_child_runs_and_resumes(tmp_store):
    run_search(tmp_store, 2, "hydra.sweeper.pruning=false")
    storage = f"sqlite:///{tmp_store.root / 'optuna.db'}"
    study = optuna.load_study(study_name="tiny", storage=storage)
    assert [t.state for t in study.trials] == [optuna.trial.TrialState.COMPLETE] * 2

    # An interrupted search leaves a trial RUNNING; resuming must not count it.
    study.ask()
    run_search(tmp_store, 3, "hydra.sweeper.pruning=false")
    states = [t.state.name for t in optuna.load_study(study_name="tiny", storage=storage).trials]
    assert states == ["COMPLETE", "COMPLETE", "FAIL", "COMPLETE"]

    client = tmp_store.client()
    experiment = client.get_experiment_by_name("mnist")
    runs = client.search_runs([experiment.experiment_id])
    parents = [r for r in runs if r.data.tags.get("sweep_role") == "parent"]
    children = [r for r in runs if r.data.tags.get("sweep_role") != "parent"]
    assert len(parents) == 2 and all(p.info.status == "FINISHED" for p in parents)
    assert len(children) == 3 and all(c.info.status == "FINISHED" for c in children)
    trial_numbers = sorted(c.data.params["search.trial_number"] for c in children)
    assert trial_numbers == ["0", "1", "3"]
    for child in children:
        assert child.data.tags["mlflow.parentRunId"] in {p.info.run_id for p in parents}
        assert 0.000001 <= float(child.data.params["trainer.learning_rate"]) <= 0.05


@pytest.mark.e2e
def test_hopeless_trial_is_pruned_and_its_run_killed(tmp_store):
    storage = f"sqlite:///{tmp_store.root / 'optuna.db'}"
    study = optuna.create_study(storage=storage, study_name="tiny", direction="maximize")
    for learning_rate in (0.01, 0.01, 0.000001):  # the third cannot learn in 3 epochs
        study.enqueue_trial({"trainer.learning_rate": learning_rate, "trainer.optimizer": "adam"})
    run_search(tmp_store, 3, "hydra.sweeper.pruning_warmup_epochs=1")
    states = [t.state.name for t in optuna.load_study(study_name="tiny", storage=storage).trials]
    assert states == ["COMPLETE", "COMPLETE", "PRUNED"]
    client = tmp_store.client()
    runs = client.search_runs(
        [client.get_experiment_by_name("mnist").experiment_id], "params.search.trial_number = '2'"
    )
    assert runs[0].info.status == "KILLED"
    assert runs[0].data.tags["failure_reason"].startswith("RunPruned: pruned by the search after epoch 1")
