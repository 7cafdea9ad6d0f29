"""The two-objective search end to end (``hparams_search=dense_search
hydra.sweeper.objective=val_accuracy_and_gap``, tiny: digits, 2 trials of 2
epochs), then ``mnist-compare`` on its runs with ``--sweep``, ``--all`` and
``--out``."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import unquote, urlparse

import optuna
import pandas as pd
import pytest
from helpers import REPORT_FILES, TempStore
from helpers.store_copies import keep_tracking_uri

from mnist_runner.paths import RUNS_DIR

pytestmark = pytest.mark.e2e

TRIALS = 2


@pytest.fixture(scope="module")
def search(tmp_path_factory):
    """(store, storage URL, experiment, parent run, child runs) of one finished search."""
    store = TempStore(tmp_path_factory.mktemp("two_objectives"))
    storage = f"sqlite:///{store.root / 'optuna.db'}"
    done = store.run_py(
        "hparams_search=dense_search",
        "hydra.sweeper.objective=val_accuracy_and_gap",
        f"hydra.sweeper.n_trials={TRIALS}",
        f"hydra.sweeper.storage={storage}",
        "hydra.sweeper.study_name=two",
        "data=digits",
        "data.train_samples=null",  # the preset's 10,000 is for MNIST
        "trainer.epochs=2",
        "tracking.system_metrics=false",
    )
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    client = store.client()
    parents, children = store.runs(role="parent"), store.runs(role="child")
    assert len(parents) == 1, [r.data.tags for r in parents]
    experiment = client.get_experiment(parents[0].info.experiment_id)
    return store, storage, experiment, parents[0], children


def test_a_two_objective_search_tells_optuna_both_values_of_every_trial(search):
    _, storage, _, parent, children = search
    study = optuna.load_study(study_name="two", storage=storage)
    assert study.directions == [optuna.study.StudyDirection.MAXIMIZE, optuna.study.StudyDirection.MINIMIZE]
    assert [t.state for t in study.trials] == [optuna.trial.TrialState.COMPLETE] * TRIALS
    assert parent.info.status == "FINISHED"
    assert len(children) == TRIALS and all(c.info.status == "FINISHED" for c in children)
    by_trial = {int(c.data.params["search.trial_number"]): c for c in children}
    for trial in study.trials:
        metrics = by_trial[trial.number].data.metrics
        assert trial.values == pytest.approx([metrics["best_val_accuracy"], metrics["final_overfit_gap"]])
        assert by_trial[trial.number].data.tags["mlflow.parentRunId"] == parent.info.run_id
    assert len(study.best_trials) >= 1  # the Pareto front


def local_path(artifact_uri: str) -> Path:
    return Path(unquote(urlparse(artifact_uri).path))


def report_rows(folder: Path) -> set[str]:
    return set(pd.read_csv(folder / "gap_report.csv")["run_id"])


def test_mnist_compare_sweep_all_and_out(search, tmp_path, monkeypatch):
    from mnist_runner.sweeps import compare

    keep_tracking_uri(monkeypatch)
    store, _, experiment, parent, children = search
    client = store.client()
    sweep_id = parent.data.tags["sweep_id"]
    child_ids = {c.info.run_id for c in children}
    # A newer sweep, with no runs: `--sweep` must find the one it names, not the latest.
    decoy = client.create_run(experiment.experiment_id, tags={"sweep_role": "parent", "sweep_id": "decoy"})
    client.set_terminated(decoy.info.run_id)
    # The sweep logged its report already; take it away to see mnist-compare log it.
    logged_report = local_path(parent.info.artifact_uri) / "report"
    for path in logged_report.iterdir():
        path.unlink()
    assert client.list_artifacts(parent.info.run_id, "report") == []

    common = ["--uri", store.uri, "--experiment", experiment.name]
    sweep_out, all_out = tmp_path / "sweep_report", tmp_path / "all_report"
    assert compare.main([*common, "--sweep", sweep_id, "--out", str(sweep_out)]) == 0
    written = {p.name for p in sweep_out.iterdir()}
    assert written >= REPORT_FILES
    assert report_rows(sweep_out) == child_ids
    logged = {Path(a.path).name for a in client.list_artifacts(parent.info.run_id, "report")}
    assert logged == written
    assert (logged_report / "gap_report.csv").read_bytes() == (sweep_out / "gap_report.csv").read_bytes()
    assert not (RUNS_DIR / "reports" / sweep_id).exists(), "--out, not the project's runs/reports"

    assert compare.main([*common, "--all", "--out", str(all_out)]) == 0
    assert {p.name for p in all_out.iterdir()} >= REPORT_FILES
    assert report_rows(all_out) == child_ids, "every run of the experiment, and no sweep's parent run"
    assert client.list_artifacts(decoy.info.run_id) == []

    # The decoy has no runs: named, it is reported as such.
    assert compare.main([*common, "--sweep", "decoy", "--out", str(tmp_path / "decoy")]) == 2
