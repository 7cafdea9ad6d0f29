"""The overfitting-gap report: which settings overfit, and by how much.

Built from ``mlflow.search_runs`` (one row per run, params and metrics as
columns) so it works for any sweep or experiment in the store; only the
per-epoch figure reads metric histories. The table is plain pandas, the
figures are matplotlib ``Figure`` objects: both testable without MLflow.
"""

from __future__ import annotations

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

# MLflow column -> report column.
METRIC_COLUMNS = {
    "metrics.train_eval_accuracy": "train_acc",
    "metrics.val_accuracy": "val_acc",
    "metrics.test_accuracy": "test_acc",
    "metrics.final_overfit_gap": "gap_final",
    "metrics.best_epoch_overfit_gap": "gap_best",
    "metrics.best_epoch": "best_epoch",
    "metrics.overfit_epoch": "overfit_epoch",
}
SORT_KEY = "gap_final"  # largest gap first; runs without one (failed) last
# Config groups swept by option (model=dense,cnn) show as their name param.
GROUPS = ("data", "preprocess", "model")
NOT_SWEPT = ("derived.", "tracking.")


def param_column(key: str) -> str:
    """The ``params.*`` column of a swept key: ``model`` -> ``params.model.name``."""
    key = key.lstrip("+~")
    return f"params.{key}.name" if key in GROUPS else f"params.{key}"


def varying_params(runs: pd.DataFrame) -> list[str]:
    """Params that differ between runs and are set for all of them: what a
    set of runs not launched as one sweep compared."""
    columns = []
    for column in runs.columns:
        if not column.startswith("params.") or column.removeprefix("params.").startswith(NOT_SWEPT):
            continue
        values = runs[column]
        if values.notna().all() and values.nunique() > 1:
            columns.append(column)
    return columns


def gap_table(runs: pd.DataFrame, swept: list[str] | None = None) -> pd.DataFrame:
    """One row per run: the swept params, train / validation / test accuracy,
    the gap at the last and at the best epoch, the best epoch, the epoch where
    validation loss stopped improving, duration and status.

    ``runs`` is ``mlflow.search_runs`` output; ``swept`` the swept config keys
    (``model``, ``trainer.epochs``); None compares every param that varies.
    Sorted by ``gap_final``, largest first; runs without a gap last.
    """
    param_columns = varying_params(runs) if swept is None else [param_column(k) for k in swept]
    table = pd.DataFrame(index=runs.index)
    table["run"] = runs.get("tags.mlflow.runName", pd.Series("", index=runs.index))
    for column in param_columns:
        name = column.removeprefix("params.").removesuffix(".name")
        table[name] = runs[column] if column in runs else None
    for column, name in METRIC_COLUMNS.items():
        table[name] = pd.to_numeric(runs[column], errors="coerce") if column in runs else np.nan
    for name in ("best_epoch", "overfit_epoch"):
        table[name] = table[name].astype("Int64")
    duration = pd.to_datetime(runs["end_time"]) - pd.to_datetime(runs["start_time"])
    table["duration_s"] = duration.dt.total_seconds().round(1)
    table["status"] = runs["status"]
    table["failure"] = runs.get("tags.failure_reason", pd.Series(None, index=runs.index))
    table["run_id"] = runs["run_id"]
    table = table.sort_values(SORT_KEY, ascending=False, na_position="last", kind="stable")
    return table.reset_index(drop=True)


def to_markdown(table: pd.DataFrame) -> str:
    """The table as Markdown: accuracies and gaps to 4 decimals, durations to
    0.1 s, params as given; no failure column when nothing failed."""
    shown = table.drop(columns=["run_id"]).astype(object)
    for column in ("train_acc", "val_acc", "test_acc", "gap_final", "gap_best"):
        shown[column] = table[column].map(lambda v: "" if pd.isna(v) else f"{v:.4f}")
    shown["duration_s"] = table["duration_s"].map(lambda v: "" if pd.isna(v) else f"{v:.1f}")
    shown = shown.fillna("")
    if not table["failure"].notna().any():
        shown = shown.drop(columns=["failure"])
    return shown.to_markdown(index=False, disable_numparse=True)


def config_label(row: pd.Series, params: list[str]) -> str:
    return " ".join(f"{p}={row[p]}" for p in params) or str(row["run"])


def swept_names(table: pd.DataFrame) -> list[str]:
    """The table's param columns: everything between ``run`` and the metrics."""
    columns = list(table.columns)
    return columns[columns.index("run") + 1 : columns.index("train_acc")]


def gap_per_epoch_figure(table: pd.DataFrame, gaps: dict[str, pd.Series]) -> Figure:
    """``overfit_gap`` per epoch for every run, one line each. ``gaps`` maps
    run_id to a Series indexed by epoch."""
    params = swept_names(table)
    figure = Figure(figsize=(13, 5.5), layout="constrained")
    ax = figure.subplots()
    colors = matplotlib.colormaps["tab20"].colors  # 20 distinct colours, not the default 10
    for index, (_, row) in enumerate(table.iterrows()):
        series = gaps.get(row["run_id"])
        if series is not None and len(series):
            ax.plot(
                series.index,
                series.values,
                marker=".",
                color=colors[index % len(colors)],
                label=config_label(row, params),
            )
    ax.axhline(0, color="grey", linewidth=0.8)
    ax.set(
        title="overfitting gap per epoch (training acc. in inference mode - validation acc.)",
        xlabel="epoch",
        ylabel="overfit_gap",
    )
    ax.grid(alpha=0.3)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    if len(table) <= 20:  # beside the axes, where it hides no line
        ax.legend(fontsize="x-small", loc="upper left", bbox_to_anchor=(1.01, 1))
    return figure


def final_gap_figure(table: pd.DataFrame) -> Figure:
    """Final gap per configuration, as bars grouped by the swept params: the
    last swept param gives the bars within a group, the others the groups."""
    params = swept_names(table)
    done = table.dropna(subset=["gap_final"])
    figure = Figure(figsize=(max(6, 0.6 * len(done) + 3), 5), layout="constrained")
    ax = figure.subplots()
    if len(params) >= 2:
        *outer, inner = params
        wide = done.pivot_table(index=outer, columns=inner, values="gap_final", aggfunc="mean")
        wide.plot.bar(ax=ax, rot=30)
        # pandas draws a missing combination (a failed run) as a 0 bar: hide it.
        for container, column in zip(ax.containers, wide.columns):
            for bar, value in zip(container, wide[column]):
                bar.set_visible(not np.isnan(value))
        ax.legend(title=inner)
    else:
        labels = done.apply(lambda row: config_label(row, params), axis=1)
        ax.bar(labels, done["gap_final"])
        ax.tick_params(axis="x", rotation=30)
    ax.axhline(0, color="grey", linewidth=0.8)
    ax.set(title="final overfitting gap per configuration", ylabel="gap_final")
    ax.grid(axis="y", alpha=0.3)
    return figure


def accuracy_vs_gap_figure(table: pd.DataFrame) -> Figure:
    """Test accuracy against final gap: top left generalises best."""
    params = swept_names(table)
    done = table.dropna(subset=["gap_final", "test_acc"])
    figure = Figure(figsize=(8, 5.5), layout="constrained")
    ax = figure.subplots()
    ax.scatter(done["gap_final"], done["test_acc"])
    for _, row in done.iterrows():
        ax.annotate(
            config_label(row, params),
            (row["gap_final"], row["test_acc"]),
            fontsize="x-small",
            xytext=(4, 2),
            textcoords="offset points",
        )
    ax.set(title="test accuracy vs final overfitting gap", xlabel="gap_final", ylabel="test_acc")
    ax.grid(alpha=0.3)
    return figure


def figures(table: pd.DataFrame, gaps: dict[str, pd.Series]) -> dict[str, Figure]:
    return {
        "gap_per_epoch": gap_per_epoch_figure(table, gaps),
        "final_gap_by_config": final_gap_figure(table),
        "test_accuracy_vs_gap": accuracy_vs_gap_figure(table),
    }
