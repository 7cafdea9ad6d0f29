"""The gap report's figures (matplotlib ``Figure`` objects, saved by
``collect``): the final gap per configuration, the gap per epoch, and test
accuracy against the gap."""

from __future__ import annotations

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator, ScalarFormatter

from mnist_runner.sweeps import stats
from mnist_runner.sweeps.rendering import mean_pm
from mnist_runner.sweeps.settings import SEPARATOR, format_setting, natural_sort, ordered_values
from mnist_runner.sweeps.tables import below_reference, factor_names, summary_table


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
    # Not the lowest bar when single-run configurations had smaller means.
    reference = "reference" if len(below_reference(summary)) else "smallest"
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
        marks = {stats.WITHIN_NOISE: "  ≈ smallest", stats.SMALLEST: f"  {reference}"} if repeated else {}
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
            f"≈ smallest: not told apart from the smallest gap (Welch's t-test, Holm-adjusted p ≥ {stats.ALPHA})"
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
