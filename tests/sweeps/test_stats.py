"""The report's statistics on numbers worked out by hand."""

import math

import pytest

from mnist_runner.sweeps import stats


def test_t_interval_of_one_to_five():
    # mean 3, sd sqrt(2.5) = 1.5811, t(0.975, 4) = 2.7764 (any t table),
    # half width 2.7764 * 1.5811 / sqrt(5) = 1.9632.
    interval = stats.t_interval([1, 2, 3, 4, 5])
    assert interval.n == 5
    assert interval.mean == pytest.approx(3.0)
    assert interval.sd == pytest.approx(1.5811388, abs=1e-6)
    assert interval.low == pytest.approx(3 - 1.9632432, abs=1e-6)
    assert interval.high == pytest.approx(3 + 1.9632432, abs=1e-6)
    assert interval.half_width == pytest.approx(1.9632432, abs=1e-6)


def test_t_interval_of_three_seeds_is_wide():
    # t(0.975, 2) = 4.3027: with three values the interval is 4.3 standard errors each side.
    interval = stats.t_interval([0.010, 0.012, 0.014])
    assert interval.sd == pytest.approx(0.002)
    assert interval.half_width == pytest.approx(4.3026527 * 0.002 / math.sqrt(3), rel=1e-6)


def test_t_interval_ignores_failed_runs_and_needs_two_values():
    assert stats.t_interval([1.0, math.nan, 3.0]).n == 2
    one = stats.t_interval([0.5, math.nan])
    assert (one.n, one.mean) == (1, 0.5)
    assert math.isnan(one.sd) and math.isnan(one.low) and math.isnan(one.high)
    assert stats.t_interval([]).n == 0


def test_welch_test_known_numbers():
    # a: mean 2, var 1; b: mean 5.5, var 5/3. se = sqrt(1/3 + 5/12) = sqrt(0.75);
    # t = -3.5 / 0.8660 = -4.0415, Welch-Satterthwaite df = 4.959, two-sided p = 0.0101.
    assert stats.welch_test([1, 2, 3], [4, 5, 6, 7]) == pytest.approx(0.0100769, abs=1e-6)
    assert stats.welch_test([4, 5, 6, 7], [1, 2, 3]) == pytest.approx(0.0100769, abs=1e-6)


def test_welch_test_cannot_tell_from_one_value_or_no_spread():
    assert math.isnan(stats.welch_test([1.0], [2.0, 3.0]))
    assert math.isnan(stats.welch_test([1.0, 1.0], [2.0, 2.0]))


def test_holm_known_numbers():
    # Sorted: 0.005 x 4 = 0.02, 0.01 x 3 = 0.03, 0.03 x 2 = 0.06, 0.04 x 1 = 0.04 -> raised to 0.06.
    assert stats.holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])


def test_holm_ties_caps_and_comparisons_not_made():
    # Ties: 0.02 x 3 = 0.06, 0.02 x 2 = 0.04 -> 0.06 (never below the one before).
    assert stats.holm([0.02, 0.02, 0.5]) == pytest.approx([0.06, 0.06, 0.5])
    assert stats.holm([0.6, 0.7]) == pytest.approx([1.0, 1.0])
    # NaN (n = 1, no test) stays NaN and does not count: m = 2 here.
    adjusted = stats.holm([math.nan, 0.01, 0.04])
    assert math.isnan(adjusted[0]) and adjusted[1:] == pytest.approx([0.02, 0.04])
    assert stats.holm([0.03]) == pytest.approx([0.03])
    assert len(stats.holm([])) == 0


def test_compare_to_smallest():
    verdicts = stats.compare_to_smallest(
        {
            "small": [0.010, 0.011, 0.012],
            "clearly larger": [0.020, 0.024, 0.022],  # t = 8.52, df 2.94, p = 0.0037
            "within noise": [0.009, 0.013, 0.014],  # overlaps the smallest
            "one seed": [0.030],
        }
    )
    assert verdicts["small"].verdict == stats.SMALLEST and math.isnan(verdicts["small"].p)
    larger = verdicts["clearly larger"]
    assert larger.p == pytest.approx(0.0036600, abs=1e-6)
    # Two comparisons could be made ("one seed" cannot): Holm doubles the smallest p.
    assert larger.p_holm == pytest.approx(2 * 0.0036600, abs=2e-6)
    assert larger.verdict == stats.DIFFERENT
    within = verdicts["within noise"]
    assert within.verdict == stats.WITHIN_NOISE and within.p_holm == pytest.approx(max(within.p, larger.p_holm))
    assert verdicts["one seed"].verdict == stats.CANNOT_TELL and math.isnan(verdicts["one seed"].p_holm)


def test_verdicts_follow_holm_not_the_raw_p_values():
    # Welch's p against [1, 2, 3]: b 0.01008, c 0.03465, d 0.06939 (scipy, checked
    # by hand in test_welch_test_known_numbers for b). Holm over m = 3:
    # b 3 x 0.01008 = 0.03023; c 2 x 0.03465 = 0.06930; d max(0.06939, 0.06930).
    verdicts = stats.compare_to_smallest(
        {"ref": [1, 2, 3], "b": [4, 5, 6, 7], "c": [3, 4, 5, 6], "d": [2.5, 3.5, 4.5, 5.5]}
    )
    assert verdicts["b"].p_holm == pytest.approx(0.0302308, abs=1e-6)
    assert verdicts["c"].p == pytest.approx(0.0346476, abs=1e-6) and verdicts["c"].p < stats.ALPHA
    assert verdicts["c"].p_holm == pytest.approx(0.0692951, abs=1e-6)
    assert verdicts["d"].p_holm == pytest.approx(0.0693883, abs=1e-6)
    assert [verdicts[name].verdict for name in "bcd"] == [stats.DIFFERENT, stats.WITHIN_NOISE, stats.WITHIN_NOISE]


def test_a_single_run_is_not_the_reference():
    # "lucky" has the smallest mean from one run: the reference is the smallest
    # mean among groups with 2 or more, and "lucky" itself cannot be told.
    verdicts = stats.compare_to_smallest({"lucky": [0.5], "ref": [1, 2, 3], "b": [4, 5, 6, 7]})
    assert verdicts["ref"].verdict == stats.SMALLEST
    assert verdicts["lucky"].verdict == stats.CANNOT_TELL
    assert verdicts["b"].verdict == stats.DIFFERENT and verdicts["b"].p == pytest.approx(0.0100769, abs=1e-6)
    # No group with 2 values: the smallest mean is named, nothing can be told.
    alone = stats.compare_to_smallest({"x": [0.2], "y": [0.1]})
    assert (alone["y"].verdict, alone["x"].verdict) == (stats.SMALLEST, stats.CANNOT_TELL)


def test_compare_without_values():
    found = stats.compare_to_smallest({"failed": [math.nan]})
    assert found["failed"].verdict == stats.CANNOT_TELL and math.isnan(found["failed"].p)
