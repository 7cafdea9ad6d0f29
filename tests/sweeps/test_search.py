"""Hyperparameter search: the Optuna sweeper on a tiny data set, run again and resumed."""

import itertools

import optuna
import pytest

from hydra_plugins.mnist_runner_search import _impl as search
from mnist_runner.errors import RunPruned
from mnist_runner.tracking import sweep_records

SWEEP_NUMBERS = itertools.count()


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


def run_search(store, n_trials, *overrides, expect_exit=None):
    """A search of ``n_trials`` on the digits into ``store``; its output. It must
    succeed, or exit with ``expect_exit``."""
    done = store.run_py(
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
        multirun=True,
        sweep_dir=f"sweep{n_trials}-{next(SWEEP_NUMBERS)}",
    )
    if expect_exit is None:
        assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    else:
        assert done.returncode == expect_exit, (done.stdout + done.stderr)[-3000:]
    return done.stdout + done.stderr


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

    runs = tmp_store.runs()
    parents = [r for r in runs if r.data.tags.get("sweep_role") == "parent"]
    children = [r for r in runs if r.data.tags.get("sweep_role") != "parent"]
    assert len(parents) == 2 and all(p.info.status == "FINISHED" for p in parents)
    assert len(children) == 3 and all(c.info.status == "FINISHED" for c in children)
    trial_numbers = sorted(c.data.params["search.trial_number"] for c in children)
    assert trial_numbers == ["0", "1", "3"]
    for child in children:
        assert child.data.tags["mlflow.parentRunId"] in {p.info.run_id for p in parents}
        assert 0.000001 <= float(child.data.params["trainer.learning_rate"]) <= 0.05

    # resume=<parent run id> goes on in that parent run and the same study.
    latest = max(parents, key=lambda p: p.info.start_time)
    more = tmp_store.run_py(f"resume={latest.info.run_id}", "hydra.sweeper.n_trials=4", sweep_dir="more")
    output = more.stdout + more.stderr
    assert more.returncode == 0, output[-3000:]
    assert "study 'tiny'" in output and "3 of 4 trials done" in output
    parents = tmp_store.runs(role="parent")
    assert len(parents) == 2 and all(p.info.status == "FINISHED" for p in parents)
    assert {p.data.tags[sweep_records.TAG_KIND] for p in parents} == {"search"}
    under_latest = tmp_store.runs(parent=latest.info.run_id)
    assert sorted(c.data.params["search.trial_number"] for c in under_latest) == ["3", "4"]
    assert all(c.info.status == "FINISHED" for c in under_latest)


@pytest.mark.e2e
def test_hopeless_trial_is_pruned_and_its_run_killed(tmp_store):
    storage = f"sqlite:///{tmp_store.root / 'optuna.db'}"
    study = optuna.create_study(storage=storage, study_name="tiny", direction="maximize")
    for learning_rate in (0.01, 0.01, 0.000001):  # the third cannot learn in 3 epochs
        study.enqueue_trial({"trainer.learning_rate": learning_rate, "trainer.optimizer": "adam"})
    run_search(tmp_store, 3, "hydra.sweeper.pruning_warmup_epochs=1")
    states = [t.state.name for t in optuna.load_study(study_name="tiny", storage=storage).trials]
    assert states == ["COMPLETE", "COMPLETE", "PRUNED"]
    runs = [run for run in tmp_store.runs() if run.data.params.get("search.trial_number") == "2"]
    assert runs[0].info.status == "KILLED"
    assert runs[0].data.tags["failure_reason"].startswith("RunPruned: pruned by the search after epoch 1")


# -- a study means what it says ---------------------------------------------------


def conf(tmp_path, **changes):
    from hydra_plugins.mnist_runner_search.config import SearchSweeperConf

    return SearchSweeperConf(storage=f"sqlite:///{tmp_path / 'optuna.db'}", study_name="s", **changes)


SPACE = {"trainer.learning_rate": optuna.distributions.FloatDistribution(1e-4, 1e-2, log=True)}


def settings(space=None, **changes):
    config = {
        "data": {"name": "mnist", "train_samples": 3000},
        "model": {"name": "dense", "dropout": 0.0},
        "trainer": {"epochs": 1, "learning_rate": 0.001, "checkpoint_dir": "/tmp/a"},
        "tracking": {"uri": "sqlite:////tmp/a.db", "run_name": None},
        "resume": None,
        "hydra": {"sweeper": {"n_trials": 3}},
    }
    for key, value in changes.items():
        group, name = key.split(".")
        config[group][name] = value
    return search.study_settings(config, space or SPACE, "val_accuracy")


def finish_one_trial(study, value=0.9):
    trial = study.ask(SPACE)
    study.tell(trial, value)
    return trial


def test_study_settings_are_the_values_trials_share():
    shared = settings()
    assert shared["trainer.epochs"] == "1" and shared["data.train_samples"] == "3000"
    assert shared["objective"] == "val_accuracy" and "search space: trainer.learning_rate" in shared
    # Searched keys, where runs are logged, checkpoints and Hydra's own settings are not settings.
    assert not [key for key in shared if key.startswith(("tracking", "hydra", "resume", "trainer.learning_rate"))]
    assert "trainer.checkpoint_dir" not in shared
    assert settings(**{"tracking.run_name": "x", "trainer.checkpoint_dir": "/elsewhere"}) == shared


def test_a_study_made_with_other_settings_is_refused_naming_the_differences(tmp_path):
    study = search.make_study(conf(tmp_path), settings())
    finish_one_trial(study)
    with pytest.raises(search.StudyMismatch) as refused:
        search.make_study(conf(tmp_path), settings(**{"trainer.epochs": 10, "data.train_samples": 10000}))
    message = str(refused.value)
    assert "hydra.sweeper.study_name=s: the study in sqlite:///" in message
    assert "data.train_samples: 3000 in the study, 10000 now" in message
    assert "trainer.epochs: 1 in the study, 10 now" in message
    assert "start a new study: hydra.sweeper.study_name=s-2" in message
    # Nothing was changed: the same settings still continue it.
    assert search.make_study(conf(tmp_path), settings()).user_attrs[search.SETTINGS_ATTR] == settings()


def test_another_objective_or_search_space_is_another_study(tmp_path):
    study = search.make_study(conf(tmp_path), settings())
    finish_one_trial(study)
    wider = {"trainer.learning_rate": optuna.distributions.FloatDistribution(1e-6, 1e-2, log=True)}
    with pytest.raises(search.StudyMismatch, match="search space: trainer.learning_rate: .*0.0001.* in the study"):
        search.make_study(conf(tmp_path), settings(space=wider))
    changed = {**settings(), "objective": "val_accuracy_and_gap"}
    with pytest.raises(search.StudyMismatch, match="objective: val_accuracy in the study, val_accuracy_and_gap now"):
        search.make_study(conf(tmp_path), changed)


def test_a_study_without_finished_trials_takes_the_new_settings(tmp_path):
    search.make_study(conf(tmp_path), settings())
    study = search.make_study(conf(tmp_path), settings(**{"trainer.epochs": 10}))
    assert study.user_attrs[search.SETTINGS_ATTR]["trainer.epochs"] == "10"


def test_a_resumed_study_does_not_draw_its_first_values_again(tmp_path):
    first = finish_one_trial(search.make_study(conf(tmp_path), settings()))
    resumed = search.make_study(conf(tmp_path), settings())
    assert resumed.ask(SPACE).params != first.params


def test_values_already_trained_are_reused_not_trained(tmp_path):
    study = search.make_study(conf(tmp_path), settings())
    first = finish_one_trial(study, value=0.93)
    study.enqueue_trial(first.params)
    again = study.ask(SPACE)
    earlier = search.same_values(study, again.params)
    assert earlier is not None and earlier.number == first.number
    search.reuse_result(study, again, earlier)
    stored = study.trials[again.number]
    assert stored.state == optuna.trial.TrialState.COMPLETE and stored.value == 0.93
    assert stored.user_attrs["duplicate_of"] == first.number
    assert search.same_values(study, {"trainer.learning_rate": 0.005}) is None


def test_a_finite_space_is_exhausted_once_every_combination_is_tried(tmp_path):
    space = {
        "trainer.optimizer": optuna.distributions.CategoricalDistribution(["adam", "rmsprop"]),
        "trainer.batch_size": optuna.distributions.IntDistribution(64, 128, step=64),
    }
    assert search.space_size(space) == 4 and search.space_size(SPACE) is None
    study = optuna.create_study(storage=conf(tmp_path).storage, study_name="grid")
    for optimizer, batch in [("adam", 64), ("adam", 128), ("rmsprop", 64)]:
        study.enqueue_trial({"trainer.optimizer": optimizer, "trainer.batch_size": batch})
        study.tell(study.ask(space), 0.5)
    assert not search.exhausted(study, space)
    study.enqueue_trial({"trainer.optimizer": "rmsprop", "trainer.batch_size": 128})
    study.tell(study.ask(space), 0.5)
    assert search.exhausted(study, space)


def test_parameter_importances_need_three_completed_trials(tmp_path):
    study = search.make_study(conf(tmp_path), settings())
    space = {**SPACE, "model.dropout": optuna.distributions.FloatDistribution(0.0, 0.5)}
    for _ in range(2):
        trial = study.ask(space)
        study.tell(trial, trial.params["model.dropout"])
    assert search.param_importances(study, space, seed=1) is None
    for _ in range(6):
        trial = study.ask(space)
        study.tell(trial, trial.params["model.dropout"])  # only dropout matters
    importances = search.param_importances(study, space, seed=1)
    assert set(importances) == set(space) and sum(importances.values()) == pytest.approx(1.0)
    assert importances["model.dropout"] > importances["trainer.learning_rate"]


@pytest.mark.e2e
def test_search_guards_other_settings_a_complete_study_and_repeated_values(tmp_store):
    storage = f"sqlite:///{tmp_store.root / 'optuna.db'}"
    run_search(tmp_store, 1, "trainer.epochs=1", "hydra.sweeper.pruning=false")
    assert len(tmp_store.runs(role="parent")) == 1

    # Other fixed settings: refused before any job, naming the difference; no run left behind.
    output = run_search(tmp_store, 2, "trainer.epochs=2", "hydra.sweeper.pruning=false", expect_exit=2)
    assert "trainer.epochs: 1 in the study, 2 now" in output
    assert "hydra.sweeper.study_name=tiny-2" in output and "Traceback" not in output
    assert len(tmp_store.runs(role="parent")) == 1
    assert len(optuna.load_study(study_name="tiny", storage=storage).trials) == 1

    # The same study again with the trials it has: it says so, runs nothing, leaves no run.
    output = run_search(tmp_store, 1, "trainer.epochs=1", "hydra.sweeper.pruning=false")
    assert "already has 1 of hydra.sweeper.n_trials=1 trials: nothing to run" in output
    assert "LookupError" not in output and "UserWarning" not in output
    assert len(tmp_store.runs(role="parent")) == 1

    # Values already trained are not trained again: trial 1 repeats trial 0's, trials 2 and 3 train.
    study = optuna.load_study(study_name="tiny", storage=storage)
    study.enqueue_trial(study.trials[0].params)
    output = run_search(tmp_store, 4, "trainer.epochs=1", "hydra.sweeper.pruning=false")
    assert "trial 1 has the values of trial 0: not trained again" in output
    trials = optuna.load_study(study_name="tiny", storage=storage).trials
    assert [t.state.name for t in trials] == ["COMPLETE"] * 4
    assert trials[1].user_attrs["duplicate_of"] == 0 and trials[1].values == trials[0].values
    client = tmp_store.client()
    children = tmp_store.runs(role="child")
    assert sorted(run.data.params["search.trial_number"] for run in children) == ["0", "2", "3"]

    # The search logged its parameter importances to its parent run.
    newest = max(tmp_store.runs(role="parent"), key=lambda run: run.info.start_time)
    assert newest.info.status == "FINISHED"
    assert {"param_importance.trainer.learning_rate", "param_importance.trainer.optimizer"} <= set(newest.data.metrics)
    logged = {artifact.path for artifact in client.list_artifacts(newest.info.run_id, "search")}
    assert logged == {"search/param_importances.csv", "search/param_importances.png"}


def test_best_trial_is_described_with_readable_numbers(tmp_path):
    study = optuna.create_study(storage=conf(tmp_path).storage, study_name="s", direction="maximize")
    study.enqueue_trial({"trainer.learning_rate": 0.00057537737941171895})
    study.tell(study.ask(SPACE), 0.25231480598449707)
    assert search.describe_trial(study.best_trial, "val_accuracy") == (
        "0: trainer.learning_rate=0.0005754 -> best_val_accuracy 0.2523"
    )


def test_failed_trials_count_towards_n_trials_but_interrupted_ones_do_not():
    """A search whose trials all fail ends after n_trials (it ran on forever);
    a trial cut short by an interrupted search is run again."""
    study = optuna.create_study()
    study.tell(study.ask(), 1.0)
    study.tell(study.ask(), state=optuna.trial.TrialState.FAIL)
    cut_short = study.ask()
    study._storage.set_trial_system_attr(cut_short._trial_id, search.INTERRUPTED, True)
    study.tell(cut_short, state=optuna.trial.TrialState.FAIL)
    assert search.counted_trials(study) == 2
