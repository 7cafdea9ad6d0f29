"""Real multiruns of `python run.py -m`, each with a temporary MLflow store."""

from importlib.metadata import version

import pandas as pd
import pytest
from helpers import TempStore

pytestmark = pytest.mark.e2e


def multirun(store, *overrides):
    return store.run_py(*overrides, "tracking.log_model=false", multirun=True, timeout=900)


def test_parallel_sweep_has_a_parent_children_and_a_report(tmp_store):
    done = multirun(
        tmp_store,
        "hydra/launcher=joblib",
        "hydra.launcher.n_jobs=2",
        "model=dense,cnn",
        "model.dropout=0.0,0.5",
        "trainer.epochs=1",
        "data.train_samples=500",
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-3000:]
    client = tmp_store.client()
    parents, children = tmp_store.runs(role="parent"), tmp_store.runs(role="child")
    assert len(parents) == 1 and len(children) == 4
    parent = parents[0]
    assert parent.info.status == "FINISHED"
    assert all(c.info.status == "FINISHED" for c in children)
    assert {c.data.tags["mlflow.parentRunId"] for c in children} == {parent.info.run_id}
    assert {c.data.tags["sweep_id"] for c in children} == {parent.data.tags["sweep_id"]}
    assert parent.data.params["sweep.model"] == "dense,cnn"
    assert parent.data.params["sweep.model.dropout"] == "0.0,0.5"
    assert parent.data.metrics["jobs_finished"] == 4

    report_dir = tmp_store.root / "sweep" / "report"
    table = pd.read_csv(report_dir / "gap_report.csv")
    assert len(table) == 4
    assert {
        "model",
        "model.dropout",
        "train_acc",
        "val_acc",
        "test_acc",
        "gap_final",
        "gap_best",
        "best_epoch",
        "overfit_epoch",
        "duration_s",
        "status",
    } <= set(table.columns)
    assert set(table["run_id"]) == {c.info.run_id for c in children}
    assert "overfitting-gap report (4 runs" in output
    logged = {a.path for a in client.list_artifacts(parent.info.run_id, "report")}
    assert {
        "report/gap_report.csv",
        "report/gap_report.md",
        "report/gap_per_epoch.png",
        "report/final_gap_by_config.png",
        "report/test_accuracy_vs_gap.png",
    } <= logged


def test_failed_job_does_not_stop_the_sweep_but_fails_it(tmp_store):
    done = multirun(
        tmp_store, "data=digits", "trainer.optimizer=sgd", "trainer.learning_rate=0.01,1e6", "trainer.epochs=2"
    )
    output = done.stdout + done.stderr
    assert done.returncode == 1, output[-3000:]  # a script running sweeps can tell
    assert "1 of 2 jobs did not finish:\n  data=digits trainer.optimizer=sgd trainer.learning_rate=1000000.0" in output
    assert "FAILED (RunFailed: training diverged" in output
    parents, children = tmp_store.runs(role="parent"), tmp_store.runs(role="child")
    assert sorted(c.info.status for c in children) == ["FAILED", "FINISHED"]
    assert parents[0].info.status == "FAILED" and parents[0].data.metrics["jobs_failed"] == 1
    table = pd.read_csv(tmp_store.root / "sweep" / "report" / "gap_report.csv")
    assert table["status"].tolist() == ["FINISHED", "FAILED"]
    assert table["failure"].iloc[1].startswith("RunFailed: training diverged")


def test_one_bad_value_fails_the_sweep_before_any_job(tmp_store):
    done = multirun(tmp_store, "data=digits", "trainer.epochs=1,0")
    assert done.returncode == 2
    assert "sweep job data=digits trainer.epochs=0" in done.stdout + done.stderr
    assert "trainer.epochs=0 is not allowed" in done.stdout + done.stderr
    parents, children = tmp_store.runs(role="parent"), tmp_store.runs(role="child")
    assert parents == [] and children == []


def test_three_configurations_times_three_seeds_report_holm_verdicts_and_leak_nothing(tmp_store):
    # Configurations that differ by little: what the report concludes must be
    # what Holm's method gives from its own raw p-values.
    done = multirun(
        tmp_store, "data=digits", "trainer.epochs=2", "model=dense", "model.dropout=0.0,0.1,0.2", "trainer.seed=1,2,3"
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-3000:]
    client = tmp_store.client()
    parents, children = tmp_store.runs(role="parent"), tmp_store.runs(role="child")
    (parent,) = parents
    assert len(children) == 9
    local = client.download_artifacts(parent.info.run_id, "report/gap_summary.csv", str(tmp_store.root))
    summary = pd.read_csv(local)
    assert sorted(summary["model.dropout"]) == [0.0, 0.1, 0.2]
    assert summary["n"].tolist() == [3, 3, 3]
    for metric in ("gap_final", "gap_best", "test_acc", "val_acc"):
        assert summary[f"{metric}_sd"].notna().all()
        assert (summary[f"{metric}_ci_low"] <= summary[f"{metric}_mean"]).all()
        assert (summary[f"{metric}_mean"] <= summary[f"{metric}_ci_high"]).all()
    # Holm by hand over the two comparisons with the smallest: the smaller p
    # doubled, the larger one at least that.
    compared = summary.dropna(subset=["gap_vs_smallest_p"]).sort_values("gap_vs_smallest_p")
    assert len(compared) == 2 and (summary["gap_vs_smallest"] == "smallest").sum() == 1
    low, high = compared["gap_vs_smallest_p"].tolist()
    expected = [min(1.0, 2 * low), max(min(1.0, 2 * low), high)]
    assert compared["gap_vs_smallest_p_holm"].tolist() == pytest.approx(expected)
    assert compared["gap_vs_smallest"].tolist() == ["yes" if p < 0.05 else "no" for p in expected]
    # The terminal table: a header, a rule, one line per configuration and the
    # line on the method, all within 100 columns.
    table = output.split("largest mean final gap first):\n", 1)[1].split("\nper run,", 1)[0].splitlines()
    assert len(table) == 6 and max(map(len, table)) <= 100, table
    assert table[-1] == "vs smallest: Welch's t-test, p Holm-adjusted over 2 comparisons"
    assert f"the report is logged to the parent run {parent.info.run_name} ({parent.info.run_id})" in output
    assert f"viewStateShareKey=sweep-{parent.info.run_id}" in output  # the saved view of its runs

    # Sequential jobs leak no state, and the same config and seed give the
    # same numbers in another process: the sweep's last job, after 8 others
    # in its process, gives what it gives in a sweep of its own, epoch by epoch.
    last = next(c for c in children if c.data.params["model.dropout"] == "0.2" and c.data.params["trainer.seed"] == "3")
    alone = TempStore(tmp_store.root / "alone")
    alone.root.mkdir()
    done = multirun(alone, "data=digits", "trainer.epochs=2", "model=dense", "model.dropout=0.2", "trainer.seed=3")
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    [by_itself] = alone.runs(role="child")
    assert stable(last.data.metrics) == stable(by_itself.data.metrics)
    for name in ("loss", "val_accuracy", "overfit_gap"):
        histories = [
            [m.value for m in store.client().get_metric_history(run.info.run_id, name)]
            for store, run in ((tmp_store, last), (alone, by_itself))
        ]
        assert len(histories[0]) == 2 and histories[0] == histories[1], name
    assert last.data.tags["data_checksum"] == by_itself.data.tags["data_checksum"]
    assert last.data.tags["version.keras"] == version("keras")


def stable(metrics: dict) -> dict:
    """The metrics that the same job gives again: not its wall times."""
    return {name: value for name, value in metrics.items() if name != "fit_seconds"}
