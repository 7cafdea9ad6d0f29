"""The overfitting-gap report: which settings overfit, by how much, and which
differences are larger than the noise between seeds.

Built from ``mlflow.search_runs`` (one row per run, params and metrics as
columns) so it works for any sweep or experiment in the store; only the
per-epoch figure reads metric histories. Two tables:

- ``gap_table``: one row per run, with its run id;
- ``summary_table``: one row per configuration, the runs that differ only in
  ``trainer.seed`` taken together as repeats: n, mean, standard deviation and
  95 % t-interval of each metric, and whether the configuration's gap is
  distinguishable from the smallest one (Welch's t-test, ``stats``).

The tables are plain pandas, the figures matplotlib ``Figure`` objects: both
testable without MLflow.
"""

from __future__ import annotations

import math

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator, ScalarFormatter
from tabulate import tabulate

from mnist_runner.sweeps import stats

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
# Config groups swept by option (model=dense,cnn) show as their name param.
GROUPS = ("data", "preprocess", "model")
NOT_SWEPT = ("derived.", "tracking.", "search.")
# Swept to repeat a configuration, not to compare settings: runs that differ
# only in these are one configuration's repeats.
REPEAT_KEYS = ("trainer.seed",)
SEED = "trainer.seed"
SEPARATOR = " · "
# Short names of common swept keys in labels; others show their last part.
SHORT_NAMES = {"trainer.learning_rate": "lr", "trainer.batch_size": "batch"}
TERMINAL_WIDTH = 100
METHODS = (
    "Runs that differ only in `trainer.seed` are repeats of one configuration. "
    "Per configuration: n finished runs, mean, standard deviation (sd) and a 95% t-interval of the mean "
    "(mean ± t(0.975, n−1)·sd/√n; none for n < 2). "
    f"*gap vs smallest*: Welch's two-sided t-test of the configuration's final gap against the configuration "
    f"with the smallest mean final gap; **yes** when p < {stats.ALPHA} (a difference larger than seed noise), "
    "**no** when it is within noise, *cannot tell* with fewer than 2 runs on a side. "
    "No correction for multiple comparisons."
)


# -- reading params ---------------------------------------------------------


def param_column(key: str) -> str:
    """The ``params.*`` column of a swept key: ``model`` -> ``params.model.name``."""
    key = key.lstrip("+~")
    return f"params.{key}.name" if key in GROUPS else f"params.{key}"


def varying_params(runs: pd.DataFrame) -> list[str]:
    """Params that differ between runs and are set for all of them: what a
    set of runs not launched as one sweep compared. Config groups' names come
    first, then the other keys alphabetically; a param that only restates
    another (``model.type`` beside ``model.name``) is left out."""
    candidates = [
        column
        for column in runs.columns
        if column.startswith("params.")
        and not column.removeprefix("params.").startswith(NOT_SWEPT)
        and runs[column].notna().all()
        and runs[column].nunique() > 1
    ]
    names = [param_column(group) for group in GROUPS]
    candidates.sort(key=lambda column: (column not in names, column))
    columns: list[str] = []
    for column in candidates:
        if not any(same_partition(runs[column], runs[kept]) for kept in columns):
            columns.append(column)
    return columns


def same_partition(a: pd.Series, b: pd.Series) -> bool:
    """Whether two params split the runs into the same groups (one determines the other)."""
    pairs = pd.DataFrame({"a": a.astype(str), "b": b.astype(str)}).drop_duplicates()
    return pairs["a"].is_unique and pairs["b"].is_unique


def parse_number(value) -> int | float | None:
    """A param as MLflow stores it ("10", "0.5", "None") as a number; None if it is none."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    if isinstance(value, (int, float)):
        return value
    text = str(value).strip()
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            continue
    return None


def format_number(value: int | float) -> str:
    """3 significant digits for fractions (0.00123, 0.5), thousands separators for large counts."""
    if isinstance(value, float) and not value.is_integer():
        return f"{value:.3g}"
    return f"{int(value):,}" if abs(value) >= 10_000 else str(int(value))


def is_none(value) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value)) or str(value) in ("None", "null", "")


def format_setting(key: str, value) -> str:
    """One setting as people read it: ``cnn``, ``10 ep``, ``dropout 0.5``,
    ``6,000 samples``, ``all samples`` (the whole training set)."""
    key = key.lstrip("+~")
    if key == "data.train_samples":
        if is_none(value):
            return "all samples"
        number = parse_number(value)
        return f"{number:,} samples" if number is not None else f"{value} samples"
    if key == "trainer.epochs":
        return f"{value} ep"
    if key in GROUPS or key.endswith(".name"):
        return str(value)
    leaf = SHORT_NAMES.get(key, key.rsplit(".", 1)[-1])
    if is_none(value):
        return f"{leaf} none"
    number = parse_number(value)
    if number is None or isinstance(value, bool) or str(value) in ("True", "False"):
        return str(value) if leaf in ("optimizer", "activation", "precision") else f"{leaf} {value}"
    return f"{leaf} {format_number(number)}"


def config_label(row: pd.Series, factors: list[str]) -> str:
    return SEPARATOR.join(format_setting(key, row[key]) for key in factors) or str(row["run"])


def config_labels(table: pd.DataFrame, factors: list[str]) -> pd.Series:
    """Each run's configuration label; configurations whose rounded labels
    coincide (learning rates 0.001234 and 0.001236) get their exact values."""
    if table.empty:
        return pd.Series([], index=table.index, dtype=object)
    labels = table.apply(lambda row: config_label(row, factors), axis=1)
    exact = table.apply(lambda row: SEPARATOR.join(f"{key}={row[key]}" for key in factors), axis=1)
    ambiguous = exact.groupby(labels).transform("nunique") > 1
    return labels.where(~ambiguous, exact)


def value_order(value) -> tuple:
    """Sort key of a param value: numbers ascending, then text, none (all) last."""
    number = parse_number(value)
    return (is_none(value), number is None, number if number is not None else 0, str(value))


def ordered_values(values: pd.Series) -> list:
    """The distinct values of a param column in ``value_order``."""
    return sorted(dict.fromkeys(values), key=value_order)


def natural_sort(table: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    """``table`` sorted by the param ``columns`` in ``value_order`` (10 after 5)."""
    if not columns:
        return table
    return table.sort_values(columns, key=lambda column: column.map(value_order), kind="stable")


# -- the per-run table -------------------------------------------------------


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


def fixed(value: float, digits: int = 4) -> str:
    return "" if pd.isna(value) else f"{value:.{digits}f}"


def to_markdown(table: pd.DataFrame) -> str:
    """The per-run table as Markdown: the run id first, accuracies and gaps to
    4 decimals, durations to 0.1 s, params as logged; no failure column when
    nothing failed."""
    shown = table.drop(columns=["config"]).astype(object)
    shown = shown[["run_id", *[c for c in shown.columns if c != "run_id"]]]
    for column in ("train_acc", "val_acc", "test_acc", "gap_final", "gap_best"):
        shown[column] = table[column].map(fixed)
    shown["duration_s"] = table["duration_s"].map(lambda v: fixed(v, 1))
    shown = shown.fillna("")
    if not table["failure"].notna().any():
        shown = shown.drop(columns=["failure"])
    return shown.to_markdown(index=False, disable_numparse=True)


# -- the per-configuration table -----------------------------------------------


def summary_table(table: pd.DataFrame) -> pd.DataFrame:
    """One row per configuration (the runs sharing every factor's value):
    ``config`` (its label), the factors, ``runs`` (all of them, failed too),
    ``n`` (those with a final gap), and for each of ``SUMMARY_METRICS`` its
    ``_mean``, ``_sd``, ``_ci_low`` and ``_ci_high`` (95 % t-interval), then
    ``gap_vs_smallest_p`` and ``gap_vs_smallest`` (Welch's test of the final
    gap against the configuration with the smallest mean, ``stats``).
    Sorted by the mean final gap, largest first."""
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
    verdicts = stats.compare_to_smallest(samples)
    for row in rows:
        row["gap_vs_smallest_p"], row["gap_vs_smallest"] = verdicts[row["config"]]
    summary = pd.DataFrame(rows)
    if summary.empty:
        return summary
    summary = summary.sort_values("gap_final_mean", ascending=False, na_position="last", kind="stable")
    return summary.reset_index(drop=True)


def p_value(p: float) -> str:
    if pd.isna(p):
        return ""
    return "p<0.001" if p < 0.001 else f"p={p:.3f}"


def verdict(row: pd.Series) -> str:
    """``yes (p=0.004)``, ``no (p=0.210)``, ``smallest``, ``cannot tell``;
    for a configuration without a finished run, what became of its runs."""
    if row.get("n") == 0 and row.get("not_finished"):
        return f"no finished run ({row['not_finished']})"
    shown = p_value(row["gap_vs_smallest_p"])
    return f"{row['gap_vs_smallest']} ({shown})" if shown else str(row["gap_vs_smallest"])


def interval_text(low: float, high: float) -> str:
    return "" if pd.isna(low) else f"[{low:.4f}, {high:.4f}]"


def mean_pm(row: pd.Series, metric: str) -> str:
    """``0.0123 ± 0.0021`` (mean ± half the 95 % interval); the mean alone for n < 2."""
    mean, low, high = row[f"{metric}_mean"], row[f"{metric}_ci_low"], row[f"{metric}_ci_high"]
    if pd.isna(mean):
        return "-"
    return f"{mean:.4f}" if pd.isna(low) else f"{mean:.4f} ± {(high - low) / 2:.4f}"


def summary_markdown(summary: pd.DataFrame) -> str:
    """The per-configuration table as Markdown: every number of ``summary_table``."""
    headers = ["configuration", "n"]
    for metric in SUMMARY_METRICS:
        headers += [f"{metric} mean", f"{metric} sd", f"{metric} 95% CI"]
    headers.append("gap vs smallest")
    rows = []
    for _, row in summary.iterrows():
        cells = [row["config"], f"{row['n']}" + ("" if row["runs"] == row["n"] else f" (of {row['runs']})")]
        for metric in SUMMARY_METRICS:
            cells += [
                fixed(row[f"{metric}_mean"]),
                fixed(row[f"{metric}_sd"]),
                interval_text(row[f"{metric}_ci_low"], row[f"{metric}_ci_high"]),
            ]
        cells.append(verdict(row))
        rows.append(cells)
    return tabulate(rows, headers, tablefmt="pipe", disable_numparse=True)


def effects_table(table: pd.DataFrame) -> pd.DataFrame:
    """What changing one setting does to the final gap, the others held fixed.

    For each factor with two values: every pair of configurations that differ
    only in it gives a difference of mean final gaps (second value minus
    first). ``gap_change_mean`` is the mean of those differences with a 95 %
    t-interval over them (``_ci_low``, ``_ci_high``): how large the change is
    on average, and how consistent across the other settings. ``pairs_tested``
    counts the pairs Welch's test could compare (n >= 2 on both sides),
    ``pairs_beyond_noise`` those where p < 0.05."""
    factors = factor_names(table)
    rows = []
    for factor in factors:
        values = ordered_values(table[factor])
        if len(values) != 2:
            continue
        first, second = values
        others = [name for name in factors if name != factor]
        groups = [group for _, group in table.groupby(others, dropna=False)] if others else [table]
        differences, tested, beyond = [], 0, 0
        for group in groups:
            before = group.loc[group[factor] == first, "gap_final"].dropna()
            after = group.loc[group[factor] == second, "gap_final"].dropna()
            if before.empty or after.empty:
                continue
            differences.append(after.mean() - before.mean())
            p = stats.welch_test(after, before)
            if not math.isnan(p):
                tested += 1
                beyond += p < stats.ALPHA
        interval = stats.t_interval(differences)
        rows.append(
            {
                "setting": factor,
                "from": format_setting(factor, first),
                "to": format_setting(factor, second),
                "pairs": len(differences),
                "gap_change_mean": interval.mean,
                "gap_change_ci_low": interval.low,
                "gap_change_ci_high": interval.high,
                "pairs_tested": tested,
                "pairs_beyond_noise": beyond,
            }
        )
    return pd.DataFrame(rows)


def signed(value: float) -> str:
    return "" if pd.isna(value) else f"{value:+.4f}"


def effects_rows(effects: pd.DataFrame) -> tuple[list[str], list[list[str]]]:
    """Headers and cells of the effects table, for Markdown and the terminal."""
    headers = ["change", "pairs", "final gap change", "95% CI", "pairs beyond noise"]
    rows = []
    for _, row in effects.iterrows():
        interval = (
            ""
            if pd.isna(row["gap_change_ci_low"])
            else f"[{signed(row['gap_change_ci_low'])}, {signed(row['gap_change_ci_high'])}]"
        )
        tested = f"{row['pairs_beyond_noise']} of {row['pairs_tested']}" if row["pairs_tested"] else "cannot tell"
        change = f"{row['from']} → {row['to']}"
        rows.append([change, str(row["pairs"]), signed(row["gap_change_mean"]), interval, tested])
    return headers, rows


EFFECTS_METHOD = (
    "Each row compares the configurations that differ only in one setting: *final gap change* is the mean, over "
    "those pairs, of the difference in mean final gap, with a 95% t-interval over the pairs; "
    "*pairs beyond noise* counts the pairs whose difference Welch's test finds significant (p < 0.05)."
)


def report_markdown(
    summary: pd.DataFrame,
    table: pd.DataFrame,
    effects: pd.DataFrame | None = None,
    title: str = "Overfitting-gap report",
) -> str:
    """The whole report: per configuration (with the methods), the effect of
    each setting, then per run."""
    parts = [
        f"# {title}",
        f"## Per configuration ({len(summary)}), largest mean final gap first",
        METHODS,
        summary_markdown(summary),
    ]
    if effects is not None and not effects.empty:
        headers, rows = effects_rows(effects)
        parts += [
            "## The effect of each setting on the final gap",
            EFFECTS_METHOD,
            tabulate(rows, headers, tablefmt="pipe", disable_numparse=True),
        ]
    parts += [f"## Per run ({len(table)}), largest final gap first", to_markdown(table)]
    return "\n\n".join(parts)


def effects_terminal_table(effects: pd.DataFrame) -> str:
    """The effects table for a terminal (a few short lines)."""
    return text_table(*effects_rows(effects))


def text_table(headers: list[str], rows: list[list]) -> str:
    """A plain fixed-width table: columns two spaces apart, a rule under the headers."""
    cells = [[str(cell) for cell in row] for row in rows]
    widths = [max(len(text) for text in column) for column in zip(headers, *cells)]

    def line(values) -> str:
        return "  ".join(value.ljust(width) for value, width in zip(values, widths)).rstrip()

    return "\n".join([line(headers), line("-" * width for width in widths), *(line(row) for row in cells)])


def terminal_table(summary: pd.DataFrame, width: int = TERMINAL_WIDTH) -> str:
    """The per-configuration table for a terminal, at most ``width`` columns:
    label, n, final gap and test accuracy (mean ± half the 95 % interval) and
    whether the gap differs from the smallest; long labels are shortened."""
    headers = ["configuration", "n", "final gap ± CI", "test acc ± CI", "vs smallest"]
    rows = [
        [row["config"], row["n"], mean_pm(row, "gap_final"), mean_pm(row, "test_acc"), verdict(row)]
        for _, row in summary.iterrows()
    ]

    def render(labels: list[str]) -> str:
        return text_table(headers, [[label, *row[1:]] for label, row in zip(labels, rows)])

    labels = [row[0] for row in rows]
    text = render(labels)
    excess = max(map(len, text.splitlines()), default=0) - width
    if excess > 0:
        keep = max(len("configuration"), max(map(len, labels)) - excess) - 1
        labels = [label if len(label) <= keep + 1 else label[:keep] + "…" for label in labels]
        text = render(labels)
    return text


# -- figures -----------------------------------------------------------------


def colours(count: int) -> list:
    """Distinct colours: tab10 for up to 10, tab20 for up to 20, then a spread of turbo."""
    if count <= 10:
        return list(matplotlib.colormaps["tab10"].colors[:count])
    if count <= 20:
        return list(matplotlib.colormaps["tab20"].colors[:count])
    return [matplotlib.colormaps["turbo"](x) for x in np.linspace(0.05, 0.95, count)]


def gap_axis(ax, which: str = "x") -> None:
    """Gaps and accuracies as plain decimals, no offset or scientific notation."""
    formatter = ScalarFormatter(useOffset=False)
    formatter.set_scientific(False)
    (ax.xaxis if which == "x" else ax.yaxis).set_major_formatter(formatter)


def legend_beside(ax, handles, labels, title: str | None = None) -> None:
    """The legend right of the axes, where it hides nothing; two columns when long."""
    ax.legend(
        handles,
        labels,
        title=title,
        fontsize="small",
        title_fontsize="small",
        loc="upper left",
        bbox_to_anchor=(1.01, 1),
        ncol=1 if len(labels) <= 18 else 2,
        frameon=False,
    )


def half_width(row: pd.Series, metric: str) -> float | None:
    """Half the 95 % interval of a summary row's metric; None without one (n < 2)."""
    low, high = row[f"{metric}_ci_low"], row[f"{metric}_ci_high"]
    return None if pd.isna(low) else (high - low) / 2


def repeats_text(n: pd.Series) -> str:
    """``3 seeds``, ``1 seed``, ``2-3 seeds``."""
    low, high = int(n.min()), int(n.max())
    count = str(low) if low == high else f"{low}–{high}"
    return f"{count} seed" + ("" if high == 1 else "s")


def final_gap_figure(table: pd.DataFrame, summary: pd.DataFrame | None = None) -> Figure:
    """One horizontal bar per configuration: the mean final gap with its 95 %
    interval, the repeats as dots, the value written beside it; largest gap on
    top. With several factors the bars are coloured by the last one."""
    summary = summary_table(table) if summary is None else summary
    factors = factor_names(table)
    done = summary.iloc[::-1].reset_index(drop=True)  # barh draws bottom-up: largest on top
    height = max(3.0, 0.42 * len(done) + 1.6)
    figure = Figure(figsize=(10, height), layout="constrained")
    ax = figure.subplots()
    repeated = bool(len(done)) and done["n"].max() >= 2
    hue = factors[-1] if len(factors) >= 2 else None
    hue_values = ordered_values(done[hue]) if hue else [None]
    palette = dict(zip(hue_values, colours(len(hue_values))))
    positions = np.arange(len(done))
    for position, (_, row) in zip(positions, done.iterrows()):
        colour = palette[row[hue] if hue else None]
        mean = row["gap_final_mean"]
        if pd.isna(mean):
            ax.text(0, position, " no finished run", va="center", fontsize="small", color="grey")
            continue
        ax.barh(position, mean, color=colour, alpha=0.85, height=0.7)
        if half_width(row, "gap_final") is not None:
            ax.errorbar(mean, position, xerr=half_width(row, "gap_final"), color="black", capsize=3, linewidth=1)
        values = table.loc[table["config"] == row["config"], "gap_final"].dropna()
        ax.plot(values, np.full(len(values), position), "o", color="black", markersize=3, alpha=0.6)
        right = max(mean if pd.isna(row["gap_final_ci_high"]) else row["gap_final_ci_high"], values.max())
        marks = {stats.WITHIN_NOISE: "  ≈ smallest", stats.SMALLEST: "  smallest"} if repeated else {}
        noise = marks.get(row["gap_vs_smallest"], "")
        ax.annotate(
            mean_pm(row, "gap_final") + noise,
            (right, position),
            xytext=(5, 0),
            textcoords="offset points",
            va="center",
            fontsize="small",
        )
    ax.set_yticks(positions, done["config"], fontsize="small")
    ax.axvline(0, color="grey", linewidth=0.8)
    ax.margins(x=0.22)
    gap_axis(ax, "x")
    ax.set_xlabel("final overfitting gap (training acc. in inference mode − validation acc.)")
    if repeated:
        title = (
            f"final overfitting gap per configuration: mean of {repeats_text(done['n'])}, 95% CI, dots = runs\n"
            "≈ smallest: not distinguishable from the smallest gap (Welch's t-test, p ≥ 0.05)"
        )
    else:
        title = "final overfitting gap per configuration: one run each (repeat seeds for intervals)"
    ax.set_title(title, fontsize="medium")
    ax.grid(axis="x", alpha=0.3)
    if hue:
        from matplotlib.patches import Patch

        handles = [Patch(color=palette[value]) for value in hue_values]
        legend_beside(ax, handles, [format_setting(hue, v) for v in hue_values])
    return figure


def epoch_frame(runs: pd.DataFrame, gaps: dict[str, pd.Series]) -> pd.DataFrame:
    """The per-epoch gaps of ``runs`` side by side: epochs as rows, runs as columns."""
    series = [gaps[run_id] for run_id in runs["run_id"] if run_id in gaps and len(gaps[run_id])]
    return pd.concat(series, axis=1).sort_index() if series else pd.DataFrame()


def gap_per_epoch_figure(table: pd.DataFrame, gaps: dict[str, pd.Series]) -> Figure:
    """``overfit_gap`` per epoch, one line per configuration: the mean over its
    repeats with a band for the 95 % interval. ``gaps`` maps run_id to a Series
    indexed by epoch. With two or more factors and a first one of at most four
    values, one panel per value of the first factor."""
    factors = factor_names(table)
    facet = factors[0] if len(factors) >= 2 and table[factors[0]].nunique() <= 4 else None
    panels = ordered_values(table[facet]) if facet else [None]

    def line_label(config: str) -> str:  # the panel's factor is in its title
        return SEPARATOR.join(config.split(SEPARATOR)[1:]) if facet else config

    line_labels = list(dict.fromkeys(line_label(config) for config in natural_sort(table, factors)["config"]))
    palette = dict(zip(line_labels, colours(len(line_labels))))
    figure = Figure(figsize=(6 * len(panels) + 3.5, 5.5), layout="constrained")
    axes = figure.subplots(1, len(panels), sharey=True, squeeze=False)[0]
    handles = {}
    epochs = set()
    for ax, panel in zip(axes, panels):
        subset = table if facet is None else table[table[facet] == panel]
        for _, runs in subset.groupby("config", sort=False):
            frame = epoch_frame(runs, gaps)
            if frame.empty:
                continue
            label = line_label(runs["config"].iloc[0])
            intervals = [stats.t_interval(frame.loc[epoch]) for epoch in frame.index]
            mean = np.array([i.mean for i in intervals])
            (line,) = ax.plot(frame.index, mean, marker=".", color=palette[label], label=label)
            low, high = np.array([i.low for i in intervals]), np.array([i.high for i in intervals])
            if not np.isnan(low).all():
                ax.fill_between(frame.index, low, high, color=palette[label], alpha=0.15, linewidth=0)
            handles.setdefault(label, line)
            epochs |= set(frame.index)
        ax.axhline(0, color="grey", linewidth=0.8)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        gap_axis(ax, "y")
        if facet:
            ax.set_title(format_setting(facet, panel))
    integer_epochs(axes, sorted(epochs))
    axes[0].set_ylabel("overfitting gap (train acc. − val. acc.)")
    repeated = len(table) and table.groupby("config").size().max() >= 2
    figure.suptitle(
        "overfitting gap per epoch: mean over seeds, band = 95% CI"
        if repeated
        else "overfitting gap per epoch, one line per configuration"
    )
    ordered = [label for label in line_labels if label in handles]
    if ordered:
        legend_beside(axes[-1], [handles[label] for label in ordered], ordered)
    return figure


def integer_epochs(axes, epochs: list[int]) -> None:
    """Whole-number epoch ticks: every epoch when there are few, else integer steps."""
    for ax in axes:
        if not epochs:
            continue
        if len(epochs) <= 15:
            ax.set_xticks(epochs)
        else:
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlim(min(epochs) - 0.5, max(epochs) + 0.5)


def accuracy_vs_gap_figure(table: pd.DataFrame, summary: pd.DataFrame | None = None) -> Figure:
    """Mean test accuracy against mean final gap per configuration, with their
    95 % intervals as error bars: top left generalises best."""
    summary = summary_table(table) if summary is None else summary
    done = summary.dropna(subset=["gap_final_mean", "test_acc_mean"])
    figure = Figure(figsize=(11, 6), layout="constrained")
    ax = figure.subplots()
    markers = "osD^v<>Pp*hX"
    palette = colours(len(done))
    handles = []
    for index, (_, row) in enumerate(done.iterrows()):
        handle = ax.errorbar(
            row["gap_final_mean"],
            row["test_acc_mean"],
            xerr=half_width(row, "gap_final"),
            yerr=half_width(row, "test_acc"),
            fmt=markers[index % len(markers)],
            color=palette[index],
            capsize=2,
            markersize=6,
            linewidth=1,
        )
        handles.append(handle)
        ax.annotate(
            str(index + 1),
            (row["gap_final_mean"], row["test_acc_mean"]),
            xytext=(4, 3),
            textcoords="offset points",
            fontsize="small",
            color=palette[index],
            fontweight="bold",
        )
    ax.set(xlabel="final overfitting gap (mean)", ylabel="test accuracy (mean)")
    ax.set_title("test accuracy vs final overfitting gap per configuration (95% CI): top left generalises best")
    gap_axis(ax, "x")
    gap_axis(ax, "y")
    ax.grid(alpha=0.3)
    if handles:
        legend_beside(ax, handles, [f"{i}  {label}" for i, label in enumerate(done["config"], 1)])
    return figure


def figures(table: pd.DataFrame, gaps: dict[str, pd.Series], summary: pd.DataFrame | None = None) -> dict[str, Figure]:
    summary = summary_table(table) if summary is None else summary
    return {
        "gap_per_epoch": gap_per_epoch_figure(table, gaps),
        "final_gap_by_config": final_gap_figure(table, summary),
        "test_accuracy_vs_gap": accuracy_vs_gap_figure(table, summary),
    }


def importance_figure(importances: dict[str, float], objective: str) -> Figure:
    """A search's parameter importances as horizontal bars, the largest on top."""
    ordered = sorted(importances.items(), key=lambda item: item[1])
    figure = Figure(figsize=(8, max(2.5, 0.5 * len(ordered) + 1.5)), layout="constrained")
    ax = figure.subplots()
    positions = np.arange(len(ordered))
    ax.barh(positions, [value for _, value in ordered], color=colours(1)[0], height=0.6)
    for position, (_, value) in zip(positions, ordered):
        ax.annotate(f"{value:.2f}", (value, position), xytext=(4, 0), textcoords="offset points", va="center")
    ax.set_yticks(positions, [key for key, _ in ordered])
    ax.set_xlim(0, max(1.0, max((value for _, value in ordered), default=0) * 1.15))
    ax.set_xlabel(f"importance for {objective} (fANOVA; the importances add up to 1)")
    ax.set_title("which searched parameter mattered")
    ax.grid(axis="x", alpha=0.3)
    return figure
