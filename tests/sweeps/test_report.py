"""The gap report on synthetic ``mlflow.search_runs`` DataFrames: known numbers in, known tables out."""

import io
import itertools
import math
import warnings

import numpy as np
import pandas as pd
import pytest

from mnist_runner.sweeps import gap_figures, rendering, settings, stats, tables
from mnist_runner.sweeps.callback import expand_grid

START = pd.Timestamp("2026-01-01 10:00:00", tz="UTC")


def runs_frame():
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
            "start_time": [START] * 4,
            "end_time": [START + pd.Timedelta(seconds=r[10]) for r in rows],
            "params.model.name": [r[1] for r in rows],
            "params.model.type": [r[1] for r in rows],
            "params.trainer.epochs": [r[2] for r in rows],
            "params.trainer.seed": ["42"] * 4,
            "params.derived.train_samples": ["42000", "42000", "41000", "40000"],
            "params.search.trial_number": ["0", "1", "2", "3"],
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


def repeats_frame(settings: dict[str, list[str]], seeds=("1", "2", "3"), gap=None, epochs=None):
    """Runs of every combination of ``settings`` (params column -> values) times
    ``seeds``; ``gap(i, combination)`` gives the final gap of run i."""
    rows = []
    for i, (combination, seed) in enumerate(itertools.product(itertools.product(*settings.values()), seeds)):
        value = gap(i, combination) if gap else 0.01 + 0.001 * i
        rows.append(
            {
                "run_id": f"id{i:03d}",
                "status": "FINISHED",
                "start_time": START,
                "end_time": START + pd.Timedelta(seconds=10),
                **dict(zip(settings, combination)),
                "params.trainer.seed": seed,
                "metrics.train_eval_accuracy": 0.99,
                "metrics.val_accuracy": 0.99 - value,
                "metrics.test_accuracy": 0.98 - value,
                "metrics.final_overfit_gap": value,
                "metrics.best_epoch_overfit_gap": value / 2,
                "metrics.best_epoch": 1,
                "metrics.overfit_epoch": 1,
                "tags.mlflow.runName": "dense-mnist",
            }
        )
    return pd.DataFrame(rows)


def test_gap_table_known_numbers():
    table = tables.gap_table(runs_frame(), swept=["model", "trainer.epochs"])
    assert list(table.columns) == [
        "run",
        "model",
        "trainer.epochs",
        "trainer.seed",  # always shown: the repeat a run is
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
        "config",
        "run_id",
    ]
    # Sorted by the final gap, largest first; the failed run last.
    assert list(table["run_id"]) == ["c", "a", "b", "d"]
    assert list(table["model"]) == ["dense", "dense", "cnn", "cnn"]
    assert list(table["trainer.epochs"]) == ["10", "5", "5", "10"]
    assert list(table["config"]) == ["dense · 10 ep", "dense · 5 ep", "cnn · 5 ep", "cnn · 10 ep"]
    assert table["gap_final"].iloc[:3].tolist() == [0.027, 0.020, 0.010]
    assert table["gap_best"].iloc[:3].tolist() == [0.018, 0.015, 0.008]
    assert table["best_epoch"].iloc[:3].tolist() == [6, 4, 5]
    assert table["overfit_epoch"].iloc[:3].tolist() == [4, 3, 5]
    assert table["duration_s"].tolist() == [55.5, 30.0, 60.0, 2.0]
    assert table["status"].tolist() == ["FINISHED"] * 3 + ["FAILED"]
    assert table["failure"].iloc[3] == "RunFailed: training diverged"
    assert pd.isna(table["test_acc"].iloc[3])


def test_without_sweep_keys_compares_the_params_that_vary():
    table = tables.gap_table(runs_frame())
    # model.name and model.type vary, but model.type only restates the model; epochs vary; seed is
    # constant; derived.* and search.* are never factors.
    assert tables.swept_names(table) == ["model", "trainer.epochs", "trainer.seed"]
    assert tables.factor_names(table) == ["model", "trainer.epochs"]


def test_seed_is_a_repeat_not_a_factor():
    runs = repeats_frame({"params.model.name": ["dense", "cnn"]})
    table = tables.gap_table(runs, swept=["model", "trainer.seed"])
    assert tables.factor_names(table) == ["model"]
    assert sorted(table["config"].unique()) == ["cnn", "dense"]
    summary = tables.summary_table(table)
    assert len(summary) == 2 and summary["n"].tolist() == [3, 3]


def test_two_configurations_times_three_seeds_known_statistics():
    gaps = {0: 0.020, 1: 0.024, 2: 0.022, 3: 0.010, 4: 0.011, 5: 0.012}
    runs = repeats_frame({"params.model.name": ["dense", "cnn"]}, gap=lambda i, _: gaps[i])
    table = tables.gap_table(runs, swept=["model", "trainer.seed"])
    summary = tables.summary_table(table)
    assert summary["config"].tolist() == ["dense", "cnn"]  # largest mean gap first
    dense, cnn = summary.iloc[0], summary.iloc[1]
    assert (dense["n"], dense["runs"]) == (3, 3)
    # dense: mean 0.022, sd 0.002, half width t(0.975, 2) * 0.002 / sqrt(3) = 4.3027 * 0.0011547 = 0.0049683
    assert dense["gap_final_mean"] == pytest.approx(0.022)
    assert dense["gap_final_sd"] == pytest.approx(0.002)
    assert dense["gap_final_ci_low"] == pytest.approx(0.022 - 0.0049683, abs=1e-7)
    assert dense["gap_final_ci_high"] == pytest.approx(0.022 + 0.0049683, abs=1e-7)
    # The other metrics are summarised the same way: gap_best is half the gap here.
    assert dense["gap_best_mean"] == pytest.approx(0.011) and dense["gap_best_sd"] == pytest.approx(0.001)
    assert dense["test_acc_mean"] == pytest.approx(0.958) and dense["val_acc_mean"] == pytest.approx(0.968)
    assert cnn["gap_final_sd"] == pytest.approx(0.001)
    # Welch: t = 8.52 on 2.94 df, p = 0.00366.
    assert dense["gap_vs_smallest_p"] == pytest.approx(0.0036600, abs=1e-6)
    assert dense["gap_vs_smallest"] == stats.DIFFERENT
    assert cnn["gap_vs_smallest"] == stats.SMALLEST


def test_effect_of_each_setting_known_numbers():
    noise = {"1": -0.001, "2": 0.0, "3": 0.001}

    def gap(i, combination):
        model, dropout = combination
        dense = model == "dense"
        return 0.02 + 0.01 * dense - (0.006 if dense else 0.004) * (dropout == "0.5") + noise[str(i % 3 + 1)]

    settings = {"params.model.name": ["dense", "cnn"], "params.model.dropout": ["0.0", "0.5"]}
    runs = repeats_frame(settings, gap=gap)
    effects = tables.effects_table(tables.gap_table(runs, swept=["model", "model.dropout", "trainer.seed"]))
    model, dropout = effects.iloc[0], effects.iloc[1]
    # cnn -> dense: +0.010 and +0.008 (with dropout) -> mean +0.009, sd 0.0014142, t(0.975, 1) = 12.706.
    assert (model["from"], model["to"], model["pairs"]) == ("cnn", "dense", 2)
    assert model["gap_change_mean"] == pytest.approx(0.009)
    assert model["gap_change_ci_high"] - model["gap_change_mean"] == pytest.approx(12.7062 * 0.001, rel=1e-4)
    # dropout 0 -> 0.5: -0.006 (dense) and -0.004 (cnn): mean -0.005, same half width.
    assert (dropout["from"], dropout["to"]) == ("dropout 0", "dropout 0.5")
    assert dropout["gap_change_mean"] == pytest.approx(-0.005)
    # Each pair's difference is far beyond the seed noise (sd 0.001).
    assert (model["pairs_tested"], model["pairs_beyond_noise"]) == (2, 2)
    headers, rows = rendering.effects_rows(effects)
    assert rows[1] == ["dropout 0 → dropout 0.5", "2", "-0.0050", "[-0.0177, +0.0077]", "2 of 2"]
    table = tables.gap_table(runs, swept=["model", "model.dropout", "trainer.seed"])
    markdown = rendering.report_markdown(tables.summary_table(table), table, effects)
    assert "## The effect of each setting on the final gap" in markdown and "cnn → dense" in markdown


def test_pairs_beyond_noise_are_counted_after_holm_over_every_pair():
    # Four pairs, each seed noise -0.001, 0, +0.001: two differ by 0.0025
    # (Welch p = 0.03759), two by 0.004 (p = 0.00805). Raw, all four are below
    # 0.05; Holm over the 4: 4 x 0.00805 = 0.0322 for both small ones, then
    # 2 x 0.03759 = 0.0752 for both others: one pair per setting is left.
    means = {("cnn", "0.0"): 0.011, ("dense", "0.0"): 0.0135, ("cnn", "0.5"): 0.0135, ("dense", "0.5"): 0.0175}
    settings = {"params.model.name": ["dense", "cnn"], "params.model.dropout": ["0.0", "0.5"]}
    runs = repeats_frame(settings, gap=lambda i, combination: means[combination] + (i % 3 - 1) * 0.001)
    table = tables.gap_table(runs, swept=["model", "model.dropout", "trainer.seed"])
    pairs = tables.effect_pairs(table).sort_values("p")
    assert pairs["p"].tolist() == pytest.approx([0.0080499, 0.0080499, 0.0375901, 0.0375901], abs=1e-6)
    assert (pairs["p"] < stats.ALPHA).all()
    assert pairs["p_holm"].tolist() == pytest.approx([0.0321996, 0.0321996, 0.0751802, 0.0751802], abs=1e-6)
    assert pairs["beyond_noise"].tolist() == [True, True, False, False]
    effects = tables.effects_table(table, pairs)
    assert effects["pairs_beyond_noise"].tolist() == [1, 1] and effects["pairs_tested"].tolist() == [2, 2]
    assert rendering.effects_rows(effects)[1][0][-1] == "1 of 2"


def test_a_one_seed_configuration_is_not_the_reference_and_the_report_says_so():
    gaps = {0: 0.020, 1: 0.024, 2: 0.022, 3: 0.010, 4: 0.011, 5: 0.012, 6: 0.002}
    runs = repeats_frame({"params.model.name": ["dense", "cnn", "lucky"]}, gap=lambda i, _: gaps.get(i, np.nan))
    runs = runs[runs["metrics.final_overfit_gap"].notna()]  # lucky: a single finished run
    table = tables.gap_table(runs, swept=["model", "trainer.seed"])
    summary = tables.summary_table(table).set_index("config")
    assert summary.loc["cnn", "gap_vs_smallest"] == stats.SMALLEST
    assert summary.loc["lucky", "gap_vs_smallest"] == stats.CANNOT_TELL
    # dense against cnn (p = 0.00366) is told, the only comparison made.
    assert summary.loc["dense", "gap_vs_smallest"] == stats.DIFFERENT
    assert summary.loc["dense", "gap_vs_smallest_p_holm"] == pytest.approx(0.0036600, abs=1e-6)
    note = "reference: cnn; lucky had a smaller mean final gap from a single finished run"
    assert note in rendering.terminal_table(summary.reset_index())
    assert note[1:] in rendering.report_markdown(summary.reset_index(), table)
    # The figure marks cnn's bar as the reference: it is not the lowest one.
    figure = gap_figures.final_gap_figure(table, summary.reset_index())
    marks = [text.get_text() for text in figure.axes[0].texts]
    assert any(mark.endswith("  reference") for mark in marks) and not any("  smallest" in m for m in marks)


def test_effects_with_one_seed_cannot_tell():
    runs = repeats_frame({"params.model.name": ["dense", "cnn"]}, seeds=("42",))
    effects = tables.effects_table(tables.gap_table(runs, swept=["model"]))
    assert effects["pairs_tested"].tolist() == [0]
    assert rendering.effects_rows(effects)[1][0][-1] == "cannot tell"


def test_one_seed_says_it_cannot_tell():
    runs = repeats_frame({"params.model.name": ["dense", "cnn"]}, seeds=("42",))
    summary = tables.summary_table(tables.gap_table(runs, swept=["model"]))
    assert summary["n"].tolist() == [1, 1]
    assert summary["gap_final_sd"].isna().all() and summary["gap_final_ci_low"].isna().all()
    assert summary["gap_vs_smallest"].tolist() == [stats.CANNOT_TELL, stats.SMALLEST]
    assert "cannot tell" in rendering.summary_markdown(summary)


def test_failed_runs_count_as_runs_not_as_values():
    runs = repeats_frame({"params.model.name": ["dense"]})
    runs.loc[0, ["metrics.final_overfit_gap", "metrics.test_accuracy"]] = np.nan
    runs.loc[0, "status"] = "FAILED"
    summary = tables.summary_table(tables.gap_table(runs, swept=["model", "trainer.seed"]))
    assert (summary["runs"].iloc[0], summary["n"].iloc[0]) == (3, 2)
    assert "2 (of 3)" in rendering.summary_markdown(summary)


@pytest.mark.parametrize(
    "key,value,shown",
    [
        ("model", "cnn", "cnn"),
        ("trainer.epochs", "10", "10 ep"),
        ("model.dropout", "0.5", "dropout 0.5"),
        ("model.dropout", "0.0", "dropout 0"),
        ("data.train_samples", "None", "all samples"),
        ("data.train_samples", "6000", "6,000 samples"),
        ("trainer.learning_rate", "0.0012345678", "lr 0.00123"),
        ("trainer.batch_size", "128", "batch 128"),
        ("trainer.patience", "3", "patience 3"),
        ("trainer.optimizer", "adam", "adam"),
    ],
)
def test_settings_read_like_words(key, value, shown):
    assert settings.format_setting(key, value) == shown


def test_labels_that_round_alike_keep_their_exact_values():
    runs = repeats_frame({"params.trainer.learning_rate": ["0.0012341", "0.0012349"]}, seeds=("1",))
    table = tables.gap_table(runs, swept=["trainer.learning_rate"])
    assert sorted(table["config"]) == ["trainer.learning_rate=0.0012341", "trainer.learning_rate=0.0012349"]


def preset_like():
    """The overfitting_gap preset's shape: 16 configurations x 3 seeds."""
    settings = {
        "params.model.name": ["dense", "cnn"],
        "params.trainer.epochs": ["5", "10"],
        "params.model.dropout": ["0.0", "0.5"],
        "params.data.train_samples": ["6000", "None"],
    }
    rng = np.random.default_rng(0)
    runs = repeats_frame(settings, gap=lambda i, c: 0.03 - 0.01 * (c[2] == "0.5") + rng.normal(0, 0.002))
    swept = ["model", "trainer.epochs", "model.dropout", "data.train_samples", "trainer.seed"]
    table = tables.gap_table(runs, swept)
    gaps = {
        run_id: pd.Series(np.linspace(0.0, gap, int(epochs)), index=range(1, int(epochs) + 1))
        for run_id, gap, epochs in zip(table["run_id"], table["gap_final"], table["trainer.epochs"])
    }
    return table, gaps


def search_like():
    """A search's shape: every trial its own configuration of four params, full-precision floats."""
    rng = np.random.default_rng(1)
    rows = {
        "params.trainer.learning_rate": [repr(float(v)) for v in 10 ** rng.uniform(-4, -2, 12)],
        "params.model.dropout": [repr(float(v)) for v in rng.uniform(0, 0.5, 12)],
        "params.trainer.batch_size": [str(v) for v in rng.choice([64, 128, 256], 12)],
        "params.trainer.optimizer": list(rng.choice(["adam", "rmsprop"], 12)),
    }
    runs = repeats_frame({"params.model.name": ["dense"]}, seeds=[str(s) for s in range(12)])
    for column, values in rows.items():
        runs[column] = values
    runs["params.trainer.seed"] = "42"
    table = tables.gap_table(runs, swept=[c.removeprefix("params.") for c in rows])
    gaps = {run_id: pd.Series([0.01, 0.02, 0.03], index=[1, 2, 3]) for run_id in table["run_id"]}
    return table, gaps


@pytest.mark.parametrize("shape", [preset_like, search_like])
def test_terminal_table_fits_100_columns(shape):
    table, _ = shape()
    text = rendering.terminal_table(tables.summary_table(table))
    assert max(len(line) for line in text.splitlines()) <= 100
    # headers, rule, a row per configuration, and the line on the method
    # where some configuration could be compared (not with one seed each)
    compared = table.groupby("config")["gap_final"].count().max() >= 2
    assert len(text.splitlines()) == 2 + table["config"].nunique() + compared


def test_terminal_table_shortens_labels_only_when_it_must():
    table, _ = preset_like()
    summary = tables.summary_table(table)
    assert "dense · 10 ep · dropout 0.5 · all samples" in rendering.terminal_table(summary)
    narrow = rendering.terminal_table(summary, width=80)
    assert max(len(line) for line in narrow.splitlines()) <= 80 and "…" in narrow


def test_markdown_has_both_tables_with_run_ids_and_the_methods():
    table, _ = preset_like()
    summary = tables.summary_table(table)
    markdown = rendering.report_markdown(summary, table)
    assert "t-interval" in markdown and "Welch" in markdown
    assert all(run_id in markdown for run_id in table["run_id"])
    config_rows = [line for line in markdown.splitlines() if line.startswith("| dense ·") or line.startswith("| cnn ·")]
    assert len(config_rows) == 16
    assert "nan" not in markdown


def render(figure) -> None:
    """Draw and save like the report does, every warning an error."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        figure.savefig(io.BytesIO(), format="png", dpi=100)


@pytest.mark.parametrize("shape", [preset_like, search_like])
def test_figures_draw_without_warnings(shape):
    table, gaps = shape()
    for figure in gap_figures.figures(table, gaps).values():
        render(figure)


def test_final_gap_figure_bars_are_means_with_intervals():
    table, gaps = preset_like()
    summary = tables.summary_table(table)
    figure = gap_figures.final_gap_figure(table, summary)
    ax = figure.axes[0]
    bars = [patch.get_width() for patch in ax.patches]
    assert sorted(bars) == pytest.approx(sorted(summary["gap_final_mean"]))
    from matplotlib.container import ErrorbarContainer

    intervals = [c for c in ax.containers if isinstance(c, ErrorbarContainer)]
    assert len(intervals) == 16  # one 95% interval per configuration
    half_widths = sorted(
        (c.lines[2][0].get_segments()[0][1][0] - c.lines[2][0].get_segments()[0][0][0]) / 2 for c in intervals
    )
    expected = sorted((summary["gap_final_ci_high"] - summary["gap_final_ci_low"]) / 2)
    assert half_widths == pytest.approx(expected)
    labels = [label.get_text() for label in ax.get_yticklabels()]
    assert "cnn · 10 ep · dropout 0.5 · all samples" in labels and "(" not in "".join(labels)
    legend = [text.get_text() for text in ax.get_legend().get_texts()]
    assert legend == ["6,000 samples", "all samples"]


def test_gap_per_epoch_has_one_legend_entry_per_configuration_and_whole_epochs():
    table, gaps = preset_like()
    figure = gap_figures.gap_per_epoch_figure(table, gaps)
    titles = [ax.get_title() for ax in figure.axes]
    assert titles == ["cnn", "dense"]  # one panel per model
    legend = [text.get_text() for text in figure.axes[-1].get_legend().get_texts()]
    assert len(legend) == len(set(legend)) == 8  # the other three factors, 2 x 2 x 2
    for ax in figure.axes:
        ticks = ax.get_xticks()
        assert list(ticks) == list(range(1, 11))


def test_one_epoch_sweep_has_one_whole_epoch_tick():
    runs = repeats_frame({"params.model.name": ["dense", "cnn"]})
    table = tables.gap_table(runs, swept=["model", "trainer.seed"])
    gaps = {run_id: pd.Series([0.01], index=[1]) for run_id in table["run_id"]}
    figure = gap_figures.gap_per_epoch_figure(table, gaps)
    render(figure)
    assert list(figure.axes[0].get_xticks()) == [1]
    assert [t.get_text() for t in figure.axes[0].get_legend().get_texts()] == ["cnn", "dense"]


def test_close_accuracies_get_plain_distinct_ticks_without_an_offset():
    runs = repeats_frame({"params.model.name": ["dense", "cnn"]}, gap=lambda i, _: 0.01 + 0.00001 * i)
    figure = gap_figures.accuracy_vs_gap_figure(tables.gap_table(runs, swept=["model", "trainer.seed"]))
    render(figure)
    ax = figure.axes[0]
    for axis in (ax.xaxis, ax.yaxis):
        assert axis.get_offset_text().get_text() == ""
        labels = [label.get_text() for label in axis.get_ticklabels()]
        assert len(set(labels)) == len(labels) and not any("e" in label for label in labels), labels


def test_number_formats_are_plain_decimals():
    table, gaps = search_like()
    figure = gap_figures.accuracy_vs_gap_figure(table)
    render(figure)
    ax = figure.axes[0]
    for label in ax.get_xticklabels() + ax.get_yticklabels():
        text = label.get_text()
        assert "e" not in text and len(text) <= 6, text
    legend = [text.get_text() for text in ax.get_legend().get_texts()]
    # Every entry has its own marker colour, and no float is printed in full.
    assert len(legend) == 12 and all(len(entry) < 70 for entry in legend)
    colours = [handle.get_color() for handle in ax.get_legend().legend_handles]
    assert len({str(colour) for colour in colours}) == 12
    assert not any(math.isnan(v) for v in tables.summary_table(table)["gap_final_mean"])


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
