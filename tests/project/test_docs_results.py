"""The README's and docs' numbers of the measured sweep are those of its
committed results (docs/overfitting_gap/), with signs and intervals as the
tables have them, and its verdicts are the report's own, recomputed."""

import pandas as pd
import pytest

from mnist_runner.paths import PROJECT_ROOT
from mnist_runner.sweeps import stats, tables

RESULTS = PROJECT_ROOT / "docs" / "overfitting_gap"
README = PROJECT_ROOT / "README.md"
SWEEP_DOC = PROJECT_ROOT / "docs" / "sweeps-and-search.md"


def signed(value: float) -> str:
    """``+0.009``, ``−0.013``: three decimals with the minus sign the docs print."""
    return f"{value:+.3f}".replace("-", "−")


@pytest.fixture(scope="module")
def results():
    return {name: pd.read_csv(RESULTS / f"gap_{name}.csv") for name in ("summary", "effects", "effect_pairs", "report")}


def test_every_picture_of_the_measured_sweep_has_its_tables_beside_it():
    names = {path.name for path in RESULTS.iterdir()}
    assert {"final_gap_by_config.png", "gap_summary.csv", "gap_effects.csv", "gap_effect_pairs.csv"} <= names
    assert "(docs/overfitting_gap/final_gap_by_config.png)" in README.read_text()
    assert "(overfitting_gap/final_gap_by_config.png)" in SWEEP_DOC.read_text()


def test_the_readme_caption_quotes_the_effects_table(results):
    caption = next(line for line in README.read_text().splitlines() if "`make sweep` on 2 cores" in line)
    for _, row in results["effects"].iterrows():
        quoted = (
            f"{row['from']} → {row['to']} {signed(row['gap_change_mean'])} "
            f"({signed(row['gap_change_ci_low'])} to {signed(row['gap_change_ci_high'])})"
        )
        assert quoted in caption
    pairs = results["effect_pairs"]
    assert f"over the {len(pairs)} pairs, {int(pairs['beyond_noise'].sum())} is beyond noise" in caption
    summary = results["summary"]
    compared = summary["gap_vs_smallest_p"].notna().sum()
    told = (summary["gap_vs_smallest"] == stats.DIFFERENT).sum()
    assert f"{told} of the {compared} other configurations are told apart" in caption


def test_the_committed_verdicts_are_holm_over_the_committed_p_values(results):
    summary = results["summary"]
    assert summary["gap_vs_smallest_p_holm"].tolist() == pytest.approx(
        stats.holm(summary["gap_vs_smallest_p"]).tolist(), nan_ok=True
    )
    pairs = results["effect_pairs"]
    assert pairs["p_holm"].tolist() == pytest.approx(stats.holm(pairs["p"]).tolist())
    # And the tables follow from the per-run results with today's code.
    per_run = pd.read_csv(RESULTS / "gap_report.csv", dtype=str)
    for column in ("gap_final", "gap_best", "test_acc", "val_acc", "train_acc"):
        per_run[column] = pd.to_numeric(per_run[column])
    again = tables.summary_table(per_run)
    assert again["gap_vs_smallest"].tolist() == summary["gap_vs_smallest"].tolist()
    assert again["gap_vs_smallest_p_holm"].tolist() == pytest.approx(
        summary["gap_vs_smallest_p_holm"].tolist(), nan_ok=True
    )


def test_the_docs_quote_only_adjusted_verdicts(results):
    text = SWEEP_DOC.read_text()
    summary = results["summary"]
    told = (summary["gap_vs_smallest"] == stats.DIFFERENT).sum()
    compared = summary["gap_vs_smallest_p"].notna().sum()
    assert f"{told} of the {compared} other configurations" in text
    assert "overfits measurably more" not in text  # the old, uncorrected claim
    for row in results["effects"].itertuples():
        assert f"| {row.pairs_beyond_noise} of {row.pairs} (" in text
