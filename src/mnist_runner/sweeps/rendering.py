"""The gap report as text: Markdown for the report file and short tables for
the terminal, both drawn by ``tabulate`` from ``tables``' DataFrames."""

from __future__ import annotations

import pandas as pd
from tabulate import tabulate

from mnist_runner.sweeps import stats
from mnist_runner.sweeps.tables import SUMMARY_METRICS, below_reference, reference_row

TERMINAL_WIDTH = 100
TERMINAL_FORMAT = "simple"  # columns two spaces apart, a rule under the headers
HOLM = (
    "Holm's step-down method over those comparisons, which keeps the chance of even one false "
    f"*yes* in the column at most {stats.ALPHA}"
)
METHODS = (
    "Runs that differ only in `trainer.seed` are repeats of one configuration. "
    "Per configuration: n finished runs, mean, standard deviation (sd) and a 95% t-interval of the mean "
    "(mean ± t(0.975, n−1)·sd/√n; none for n < 2). "
    "*gap vs smallest*: Welch's two-sided t-test of the configuration's final gap against the reference, "
    f"the configuration with the smallest mean final gap among those with at least {stats.MIN_REFERENCE_RUNS} "
    f"finished runs; its p-values are adjusted for the number of comparisons by {HOLM}. "
    f"**yes** when the adjusted p < {stats.ALPHA} (a difference beyond seed noise), **no** when it is within "
    "noise, *cannot tell* with fewer than 2 runs on a side or no spread on either (not counted among the comparisons)."
)
EFFECTS_METHOD = (
    "Each row compares the configurations that differ only in one setting: *final gap change* is the mean, over "
    "those pairs, of the difference in mean final gap, with a 95% t-interval over the pairs; "
    "*pairs beyond noise* counts the pairs whose difference Welch's test finds significant after Holm's "
    f"adjustment over every pair of this table (family-wise error rate {stats.ALPHA}); "
    "gap_effect_pairs.csv lists each pair with its raw and adjusted p-value."
)


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


def p_value(p: float) -> str:
    if pd.isna(p):
        return ""
    return "p<0.001" if p < 0.001 else f"p={p:.3f}"


def verdict(row: pd.Series) -> str:
    """``yes (p=0.004)``, ``no (p=0.210)``, ``smallest``, ``cannot tell``, with
    the Holm-adjusted p-value (the column's header says so); for a
    configuration without a finished run, what became of its runs."""
    if row.get("n") == 0 and row.get("not_finished"):
        return f"no finished run ({row['not_finished']})"
    shown = p_value(row["gap_vs_smallest_p_holm"])
    return f"{row['gap_vs_smallest']} ({shown})" if shown else str(row["gap_vs_smallest"])


def reference_note(summary: pd.DataFrame) -> str | None:
    """A line on the reference when it is not simply the smallest mean: the
    configurations below it had a single finished run."""
    reference = reference_row(summary)
    lower = below_reference(summary)
    if reference is None or lower.empty:
        return None
    names = ", ".join(lower["config"])
    return (
        f"reference: {reference['config']}; {names} had a smaller mean final gap from a single finished run, "
        "whose spread is unknown, so it cannot be the reference"
    )


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
    headers += ["p (Welch)", "p (Holm)", "gap vs smallest (Holm p)"]
    rows = []
    for _, row in summary.iterrows():
        cells = [row["config"], f"{row['n']}" + ("" if row["runs"] == row["n"] else f" (of {row['runs']})")]
        for metric in SUMMARY_METRICS:
            cells += [
                fixed(row[f"{metric}_mean"]),
                fixed(row[f"{metric}_sd"]),
                interval_text(row[f"{metric}_ci_low"], row[f"{metric}_ci_high"]),
            ]
        cells += [fixed(row["gap_vs_smallest_p"]), fixed(row["gap_vs_smallest_p_holm"]), verdict(row)]
        rows.append(cells)
    return tabulate(rows, headers, tablefmt="pipe", disable_numparse=True)


def signed(value: float) -> str:
    return "" if pd.isna(value) else f"{value:+.4f}"


def effects_rows(effects: pd.DataFrame) -> tuple[list[str], list[list[str]]]:
    """Headers and cells of the effects table, for Markdown and the terminal."""
    headers = ["change", "pairs", "final gap change", "95% CI", "pairs beyond noise (Holm)"]
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
    ]
    note = reference_note(summary)
    if note:
        parts.append(f"*{note[0].upper()}{note[1:]}.*")
    parts.append(summary_markdown(summary))
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
    headers, rows = effects_rows(effects)
    return tabulate(rows, headers, tablefmt=TERMINAL_FORMAT, disable_numparse=True)


def terminal_table(summary: pd.DataFrame, width: int = TERMINAL_WIDTH) -> str:
    """The per-configuration table for a terminal, at most ``width`` columns:
    label, n, final gap and test accuracy (mean ± half the 95 % interval) and
    whether the gap differs from the reference (Holm-adjusted); long labels
    are shortened. Lines under it say how the verdicts were reached, and name
    the reference when configurations with a single run had a smaller mean."""
    headers = ["configuration", "n", "final gap ± CI", "test acc ± CI", "vs smallest"]
    rows = [
        [row["config"], str(row["n"]), mean_pm(row, "gap_final"), mean_pm(row, "test_acc"), verdict(row)]
        for _, row in summary.iterrows()
    ]

    def render(labels: list[str]) -> str:
        cells = [[label, *row[1:]] for label, row in zip(labels, rows)]
        return tabulate(cells, headers, tablefmt=TERMINAL_FORMAT, disable_numparse=True)

    labels = [row[0] for row in rows]
    text = render(labels)
    excess = max(map(len, text.splitlines()), default=0) - width
    if excess > 0:
        keep = max(len("configuration"), max(map(len, labels)) - excess) - 1
        labels = [label if len(label) <= keep + 1 else label[:keep] + "…" for label in labels]
        text = render(labels)
    tested = int(summary["gap_vs_smallest_p"].notna().sum()) if len(summary) else 0
    lines = [text]
    if tested:
        lines.append(
            f"vs smallest: Welch's t-test, p Holm-adjusted over {tested} comparison{'' if tested == 1 else 's'}"
        )
    note = reference_note(summary)
    if note:
        lines.append(note)
    return "\n".join(lines)
