"""Statistics over a configuration's repeats (its runs with different seeds).

Two questions, answered with textbook methods:

- How precisely do the repeats pin down a mean? ``t_interval``: the sample
  mean with Student's t-interval, ``mean +- t(0.975, n-1) * sd / sqrt(n)``
  for 95 %, where ``sd`` is the sample standard deviation (n - 1 in the
  denominator). It assumes the values are roughly normal around their mean;
  with three seeds it is wide, which is the honest answer.
- Is one configuration's mean really different from another's?
  ``welch_test``: Welch's two-sided t-test, which does not assume equal
  variances. A p-value below ``ALPHA`` (0.05) says the difference is larger
  than the seed-to-seed noise would make it by chance.

With fewer than two values per side neither can be computed: the spread is
unknown, and the functions say so (NaN, ``CANNOT_TELL``) instead of guessing.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

CONFIDENCE = 0.95
ALPHA = 0.05  # significance level of the Welch test

# Verdicts of ``compare_to_smallest``.
SMALLEST = "smallest"
DIFFERENT = "yes"
WITHIN_NOISE = "no"
CANNOT_TELL = "cannot tell"


@dataclass(frozen=True)
class Interval:
    """A sample's size, mean, standard deviation and confidence interval of the
    mean; sd and the interval are NaN below two values."""

    n: int
    mean: float
    sd: float
    low: float
    high: float

    @property
    def half_width(self) -> float:
        return (self.high - self.low) / 2


def finite(values: Iterable[float]) -> np.ndarray:
    """The values as floats, without NaN (a failed run has no metrics)."""
    array = np.asarray(list(values), dtype=float)
    return array[~np.isnan(array)]


def t_interval(values: Iterable[float], confidence: float = CONFIDENCE) -> Interval:
    """Mean and Student's t confidence interval of the mean of ``values``."""
    from scipy import stats

    sample = finite(values)
    n = len(sample)
    if n == 0:
        return Interval(0, math.nan, math.nan, math.nan, math.nan)
    mean = float(sample.mean())
    if n < 2:
        return Interval(1, mean, math.nan, math.nan, math.nan)
    sd = float(sample.std(ddof=1))
    half = float(stats.t.ppf((1 + confidence) / 2, n - 1)) * sd / math.sqrt(n)
    return Interval(n, mean, sd, mean - half, mean + half)


def welch_test(a: Iterable[float], b: Iterable[float]) -> float:
    """Two-sided p-value of Welch's t-test that ``a`` and ``b`` have the same
    mean; NaN when it cannot be computed (fewer than two values on a side, or
    no spread on either)."""
    from scipy import stats

    x, y = finite(a), finite(b)
    if len(x) < 2 or len(y) < 2 or (x.std() == 0 and y.std() == 0):
        return math.nan
    return float(stats.ttest_ind(x, y, equal_var=False).pvalue)


def compare_to_smallest(groups: dict[str, Iterable[float]], alpha: float = ALPHA) -> dict[str, tuple[float, str]]:
    """For each group: (p-value, verdict) of Welch's test against the group
    with the smallest mean. The verdict is ``SMALLEST`` for that group,
    ``DIFFERENT`` when p < ``alpha``, ``WITHIN_NOISE`` otherwise, and
    ``CANNOT_TELL`` when the test cannot be computed (n < 2)."""
    samples = {name: finite(values) for name, values in groups.items()}
    means = {name: sample.mean() for name, sample in samples.items() if len(sample)}
    if not means:
        return {name: (math.nan, CANNOT_TELL) for name in samples}
    smallest = min(means, key=means.get)
    result = {}
    for name, sample in samples.items():
        if name == smallest:
            result[name] = (math.nan, SMALLEST)
            continue
        p = welch_test(sample, samples[smallest])
        if math.isnan(p):
            result[name] = (p, CANNOT_TELL)
        else:
            result[name] = (p, DIFFERENT if p < alpha else WITHIN_NOISE)
    return result
