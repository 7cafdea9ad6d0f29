"""The gap report's tables, plain pandas built from ``mlflow.search_runs``
output (one row per run, params and metrics as columns), so they work for
any sweep or experiment and are testable without MLflow:

- ``gap_table``: one row per run, with its run id;
- ``summary_table``: one row per configuration, the runs that differ only in
  ``trainer.seed`` taken together as repeats: n, mean, standard deviation and
  95 % t-interval of each metric, and whether the configuration's gap is
  distinguishable from the smallest one (Welch's t-test, Holm-adjusted);
- ``effect_pairs`` and ``effects_table``: what changing one setting does to
  the final gap, pair by pair and per setting.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from mnist_runner.sweeps import stats
from mnist_runner.sweeps.settings import (
    REPEAT_KEYS,
    SEED,
    SEPARATOR,
    config_labels,
    format_setting,
    ordered_values,
    param_column,
    varying_params,
)

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


# The metrics summarised per configuration, in this order.
SUMMARY_METRICS = ("gap_final", "gap_best", "test_acc", "val_acc")


def gap_table(runs: pd.DataFrame, swept: list[str] | None = None) -> pd.DataFrame:
    """One row per run: the swept params (``trainer.seed`` too, whether swept
    or not), train / validation / test accuracy, the gap at the last and at the
    best epoch, the best epoch, the epoch where validation loss stopped
    improving, duration, status, the configuration's label and the run id.

    ``runs`` is ``mlflow.search_runs`` output; ``swept`` the swept config keys
    (``model``, ``trainer.epochs``); None compares every param that varies.
    Sorted by ``gap_final``, largest first; runs without a gap last.
    """
    param_columns = varying_params(runs) if swept is None else [param_column(k) for k in swept]
    seed_column = param_column(SEED)
    if seed_column in runs and seed_column not in param_columns:
        param_columns.append(seed_column)
    # The repeat key last among the params: the factors come first.
    param_columns.sort(key=lambda column: column == seed_column)
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
    factors = factor_names(table)
    table["config"] = config_labels(table, factors)
    table["run_id"] = runs["run_id"]
    table = table.sort_values(SORT_KEY, ascending=False, na_position="last", kind="stable")
    return table.reset_index(drop=True)


def swept_names(table: pd.DataFrame) -> list[str]:
    """The table's param columns: everything between ``run`` and the metrics."""
    columns = list(table.columns)
    return columns[columns.index("run") + 1 : columns.index("train_acc")]


def factor_names(table: pd.DataFrame) -> list[str]:
    """The params that make a configuration: the swept ones but the seed."""
    return [name for name in swept_names(table) if name not in REPEAT_KEYS]


def summary_table(table: pd.DataFrame) -> pd.DataFrame:
    """One row per configuration (the runs sharing every factor's value):
    ``config`` (its label), the factors, ``runs`` (all of them, failed too),
    ``n`` (those with a final gap), and for each of ``SUMMARY_METRICS`` its
    ``_mean``, ``_sd``, ``_ci_low`` and ``_ci_high`` (95 % t-interval), then
    the final gap against the reference configuration (``stats.reference``:
    the smallest mean among those with at least 2 runs): Welch's p-value
    ``gap_vs_smallest_p``, Holm's adjustment of it over the table's
    comparisons ``gap_vs_smallest_p_holm``, and the verdict
    ``gap_vs_smallest``. Sorted by the mean final gap, largest first."""
    factors = factor_names(table)
    rows = []
    samples = {}
    for label, runs in table.groupby("config", sort=False):
        row = {"config": label, **{factor: runs[factor].iloc[0] for factor in factors}}
        row["runs"] = len(runs)
        row["n"] = int(runs["gap_final"].notna().sum())
        # Why runs have no result: e.g. "1 FAILED, 1 KILLED".
        unfinished = runs.loc[runs["status"] != "FINISHED", "status"].value_counts().sort_index()
        row["not_finished"] = ", ".join(f"{number} {status}" for status, number in unfinished.items())
        for metric in SUMMARY_METRICS:
            interval = stats.t_interval(runs[metric])
            row[f"{metric}_mean"] = interval.mean
            row[f"{metric}_sd"] = interval.sd
            row[f"{metric}_ci_low"] = interval.low
            row[f"{metric}_ci_high"] = interval.high
        samples[label] = runs["gap_final"]
        rows.append(row)
    comparisons = stats.compare_to_smallest(samples)
    for row in rows:
        found = comparisons[row["config"]]
        row["gap_vs_smallest_p"], row["gap_vs_smallest_p_holm"] = found.p, found.p_holm
        row["gap_vs_smallest"] = found.verdict
    summary = pd.DataFrame(rows)
    if summary.empty:
        return summary
    summary = summary.sort_values("gap_final_mean", ascending=False, na_position="last", kind="stable")
    return summary.reset_index(drop=True)


def reference_row(summary: pd.DataFrame) -> pd.Series | None:
    """The summary's reference configuration (verdict ``smallest``), or None."""
    found = summary[summary["gap_vs_smallest"] == stats.SMALLEST] if len(summary) else summary
    return found.iloc[0] if len(found) else None


def below_reference(summary: pd.DataFrame) -> pd.DataFrame:
    """Configurations with a smaller mean final gap than the reference: those
    with a single finished run, which cannot be the reference."""
    row = reference_row(summary)
    if row is None:
        return summary.iloc[0:0]
    return summary[summary["gap_final_mean"] < row["gap_final_mean"]]


def effect_pairs(table: pd.DataFrame) -> pd.DataFrame:
    """Every pair of configurations that differ only in one two-valued factor:
    ``setting``, its ``from`` and ``to`` values, ``others`` (the label of the
    settings held fixed), ``gap_change`` (mean final gap of ``to`` minus that
    of ``from``), Welch's ``p`` and ``p_holm``, adjusted by Holm's method over
    all the pairs of the table (every setting's), and ``beyond_noise``
    (``p_holm`` < ``stats.ALPHA``)."""
    factors = factor_names(table)
    rows = []
    for factor in factors:
        values = ordered_values(table[factor])
        if len(values) != 2:
            continue
        first, second = values
        others = [name for name in factors if name != factor]
        groups = [group for _, group in table.groupby(others, dropna=False)] if others else [table]
        for group in groups:
            before = group.loc[group[factor] == first, "gap_final"].dropna()
            after = group.loc[group[factor] == second, "gap_final"].dropna()
            if before.empty or after.empty:
                continue
            rows.append(
                {
                    "setting": factor,
                    "from": format_setting(factor, first),
                    "to": format_setting(factor, second),
                    "others": SEPARATOR.join(format_setting(name, group[name].iloc[0]) for name in others),
                    "gap_change": after.mean() - before.mean(),
                    "p": stats.welch_test(after, before),
                }
            )
    pairs = pd.DataFrame(rows, columns=["setting", "from", "to", "others", "gap_change", "p"])
    pairs["p_holm"] = stats.holm(pairs["p"])
    pairs["beyond_noise"] = pairs["p_holm"] < stats.ALPHA
    return pairs


def effects_table(table: pd.DataFrame, pairs: pd.DataFrame | None = None) -> pd.DataFrame:
    """What changing one setting does to the final gap, the others held fixed.

    For each factor with two values, over its pairs in ``effect_pairs``:
    ``gap_change_mean``, the mean of the pairs' differences, with a 95 %
    t-interval over them (``_ci_low``, ``_ci_high``): how large the change is
    on average, and how consistent across the other settings.
    ``pairs_tested`` counts the pairs Welch's test could compare (n >= 2 on
    both sides), ``pairs_beyond_noise`` those whose Holm-adjusted p-value is
    below ``stats.ALPHA``, the family being every pair of the table."""
    pairs = effect_pairs(table) if pairs is None else pairs
    rows = []
    for factor, found in pairs.groupby("setting", sort=False):
        interval = stats.t_interval(found["gap_change"])
        rows.append(
            {
                "setting": factor,
                "from": found["from"].iloc[0],
                "to": found["to"].iloc[0],
                "pairs": len(found),
                "gap_change_mean": interval.mean,
                "gap_change_ci_low": interval.low,
                "gap_change_ci_high": interval.high,
                "pairs_tested": int(found["p"].notna().sum()),
                "pairs_beyond_noise": int(found["beyond_noise"].sum()),
            }
        )
    return pd.DataFrame(rows)
