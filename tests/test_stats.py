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


def test_compare_to_smallest():
    verdicts = stats.compare_to_smallest(
        {
            "small": [0.010, 0.011, 0.012],
            "clearly larger": [0.020, 0.024, 0.022],  # t = 8.52, df 2.94, p = 0.0037
            "within noise": [0.009, 0.013, 0.014],  # overlaps the smallest
            "one seed": [0.030],
        }
    )
    assert verdicts["small"][1] == stats.SMALLEST and math.isnan(verdicts["small"][0])
    assert verdicts["clearly larger"][0] == pytest.approx(0.0036600, abs=1e-6)
    assert verdicts["clearly larger"][1] == stats.DIFFERENT
    assert verdicts["within noise"][1] == stats.WITHIN_NOISE and verdicts["within noise"][0] > stats.ALPHA
    assert verdicts["one seed"][1] == stats.CANNOT_TELL


def test_compare_without_values():
    assert stats.compare_to_smallest({"failed": [math.nan]}) == {
        "failed": (pytest.approx(math.nan, nan_ok=True), "cannot tell")
    }
