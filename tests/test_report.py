"""The gap report on a synthetic ``mlflow.search_runs`` DataFrame: known numbers in, known table out."""

import pandas as pd
import pytest

from mnist_runner.sweeps import report
from mnist_runner.sweeps.callback import expand_grid


def runs_frame():
    start = pd.Timestamp("2026-01-01 10:00:00", tz="UTC")
    rows = [
        # run_id, model, epochs, train, val, test, gap_final, gap_best, best_epoch, overfit_epoch, seconds, status
        ("a", "dense", "5", 0.990, 0.970, 0.968, 0.020, 0.015, 4, 3, 30.0, "FINISHED"),
        ("b", "cnn", "5", 0.995, 0.985, 0.984, 0.010, 0.008, 5, 5, 60.0, "FINISHED"),
        ("c", "dense", "10", 0.999, 0.972, 0.970, 0.027, 0.018, 6, 4, 55.5, "FINISHED"),
        ("d", "cnn", "10", None, None, None, None, None, None, None, 2.0, "FAILED"),
    ]
    frame = pd.DataFrame(
        {
            "run_id": [r[0] for r in rows],
            "status": [r[11] for r in rows],
            "start_time": [start] * 4,
            "end_time": [start + pd.Timedelta(seconds=r[10]) for r in rows],
            "params.model.name": [r[1] for r in rows],
            "params.model.type": [r[1] for r in rows],
            "params.trainer.epochs": [r[2] for r in rows],
            "params.trainer.seed": ["42"] * 4,
            "params.derived.train_samples": ["42000", "42000", "41000", "40000"],
            "metrics.train_eval_accuracy": [r[3] for r in rows],
            "metrics.val_accuracy": [r[4] for r in rows],
            "metrics.test_accuracy": [r[5] for r in rows],
            "metrics.final_overfit_gap": [r[6] for r in rows],
            "metrics.best_epoch_overfit_gap": [r[7] for r in rows],
            "metrics.best_epoch": [r[8] for r in rows],
            "metrics.overfit_epoch": [r[9] for r in rows],
            "tags.mlflow.runName": [f"run-{r[0]}" for r in rows],
            "tags.failure_reason": [None, None, None, "RunFailed: training diverged"],
        }
    )
    return frame


def test_gap_table_known_numbers():
    table = report.gap_table(runs_frame(), swept=["model", "trainer.epochs"])
    assert list(table.columns) == [
        "run",
        "model",
        "trainer.epochs",
        "train_acc",
        "val_acc",
        "test_acc",
        "gap_final",
        "gap_best",
        "best_epoch",
        "overfit_epoch",
        "duration_s",
        "status",
        "failure",
        "run_id",
    ]
    # Sorted by the final gap, largest first; the failed run last.
    assert list(table["run_id"]) == ["c", "a", "b", "d"]
    assert list(table["model"]) == ["dense", "dense", "cnn", "cnn"]
    assert list(table["trainer.epochs"]) == ["10", "5", "5", "10"]
    assert table["gap_final"].iloc[:3].tolist() == [0.027, 0.020, 0.010]
    assert table["gap_best"].iloc[:3].tolist() == [0.018, 0.015, 0.008]
    assert table["best_epoch"].iloc[:3].tolist() == [6, 4, 5]
    assert table["overfit_epoch"].iloc[:3].tolist() == [4, 3, 5]
    assert table["duration_s"].tolist() == [55.5, 30.0, 60.0, 2.0]
    assert table["status"].tolist() == ["FINISHED"] * 3 + ["FAILED"]
    assert table["failure"].iloc[3] == "RunFailed: training diverged"
    assert pd.isna(table["test_acc"].iloc[3])


def test_without_sweep_keys_compares_the_params_that_vary():
    table = report.gap_table(runs_frame())
    params = report.swept_names(table)
    # model.name and model.type vary, epochs vary; seed is constant; derived.* is never a sweep key.
    assert params == ["model", "model.type", "trainer.epochs"]


def test_markdown_and_figures():
    table = report.gap_table(runs_frame(), swept=["model", "trainer.epochs"])
    markdown = report.to_markdown(table)
    assert markdown.splitlines()[0].startswith("| run ") and "0.0270" in markdown and "run_id" not in markdown
    assert "55.5" in markdown and "nan" not in markdown and "RunFailed: training diverged" in markdown
    gaps = {"a": pd.Series([0.01, 0.02], index=[1, 2]), "c": pd.Series([0.0, 0.03], index=[1, 2])}
    figures = report.figures(table, gaps)
    assert set(figures) == {"gap_per_epoch", "final_gap_by_config", "test_accuracy_vs_gap"}
    assert len(figures["gap_per_epoch"].axes[0].lines) == 2 + 1  # two runs and the zero line
    bars = figures["final_gap_by_config"].axes[0].patches
    assert sorted(round(b.get_height(), 3) for b in bars if b.get_visible()) == [0.01, 0.02, 0.027]


@pytest.mark.parametrize(
    "overrides,swept,jobs",
    [
        (
            ["model=dense,cnn", "trainer.epochs=1"],
            ["model"],
            [["model=dense", "trainer.epochs=1"], ["model=cnn", "trainer.epochs=1"]],
        ),
        (["a=1,2", "b=x,y"], ["a", "b"], [["a=1", "b=x"], ["a=1", "b=y"], ["a=2", "b=x"], ["a=2", "b=y"]]),
        # A command-line value replaces a preset's sweep of the same key.
        (["a=1,2", "a=3"], [], [["a=3"]]),
    ],
)
def test_expand_grid(overrides, swept, jobs):
    assert expand_grid(overrides) == (swept, jobs)
