"""Statistics over a configuration's repeats (its runs with different seeds).

Three questions, answered with textbook methods:

- How precisely do the repeats pin down a mean? ``t_interval``: the sample
  mean with Student's t-interval, ``mean +- t(0.975, n-1) * sd / sqrt(n)``
  for 95 %, where ``sd`` is the sample standard deviation (n - 1 in the
  denominator). It assumes the values are roughly normal around their mean;
  with three seeds it is wide, which is the honest answer.
- Is one configuration's mean really different from another's?
  ``welch_test``: Welch's two-sided t-test, which does not assume equal
  variances.
- Which of many such differences can a report claim at once? ``holm``:
  Holm's step-down adjustment of a family of p-values. A verdict says
  "beyond noise" only when its adjusted p-value is below ``ALPHA``, so the
  chance that a report makes even one false claim in a family (its
  family-wise error rate) stays at most ``ALPHA``, whatever the number of
  comparisons and however they depend on each other.

With fewer than two values per side neither test can be computed: the
spread is unknown, and the functions say so (NaN, ``CANNOT_TELL``) instead
of guessing; such comparisons are not counted in the family.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

CONFIDENCE = 0.95
ALPHA = 0.05  # family-wise error rate of a report's verdicts (after Holm's adjustment)
MIN_REFERENCE_RUNS = 2

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


def holm(p_values: Iterable[float]) -> np.ndarray:
    """Holm's step-down adjustment of a family of p-values, in their order.

    Sorted ascending, the k-th smallest of m p-values is multiplied by
    m - k + 1, capped at 1, and made at least the adjusted value before it;
    a comparison is beyond noise when its adjusted p-value is below
    ``ALPHA``. NaN entries (comparisons that could not be made) stay NaN and
    do not count in m. Written here because scipy adjusts only for the
    false discovery rate (``scipy.stats.false_discovery_control``), and
    statsmodels would be a large dependency for a dozen lines.
    """
    p = np.asarray(list(p_values), dtype=float)
    adjusted = np.full(p.shape, math.nan)
    tested = np.flatnonzero(~np.isnan(p))
    order = tested[np.argsort(p[tested], kind="stable")]
    running = 0.0
    for rank, index in enumerate(order):
        running = max(running, min(1.0, (len(order) - rank) * p[index]))
        adjusted[index] = running
    return adjusted


@dataclass(frozen=True)
class Comparison:
    """One configuration against the reference: Welch's p-value, the same
    after Holm's adjustment over the report's family, and the verdict."""

    p: float
    p_holm: float
    verdict: str


def reference(samples: dict[str, np.ndarray]) -> str | None:
    """The group to compare the others with: the smallest mean among the groups
    with at least ``MIN_REFERENCE_RUNS`` values (a single run's value has no
    known spread, so nothing can be told from a comparison with it); when no
    group has that many, the smallest mean of all, and None without values."""
    means = {name: sample.mean() for name, sample in samples.items() if len(sample)}
    repeated = {name: mean for name, mean in means.items() if len(samples[name]) >= MIN_REFERENCE_RUNS}
    candidates = repeated or means
    return min(candidates, key=candidates.get) if candidates else None


def compare_to_smallest(groups: dict[str, Iterable[float]], alpha: float = ALPHA) -> dict[str, Comparison]:
    """Each group against the reference (``reference``: the smallest mean among
    groups with at least 2 values), by Welch's test, the p-values adjusted by
    Holm's method over the comparisons that could be made. The verdict is
    ``SMALLEST`` for the reference, ``DIFFERENT`` when the adjusted p < ``alpha``,
    ``WITHIN_NOISE`` otherwise, and ``CANNOT_TELL`` when the test cannot be
    computed (fewer than 2 values on a side)."""
    samples = {name: finite(values) for name, values in groups.items()}
    smallest = reference(samples)
    names = [name for name in samples if name != smallest]
    raw = [math.nan if smallest is None else welch_test(samples[name], samples[smallest]) for name in names]
    result = {name: Comparison(math.nan, math.nan, SMALLEST) for name in samples if name == smallest}
    for name, p, p_holm in zip(names, raw, holm(raw)):
        if math.isnan(p):
            result[name] = Comparison(p, p_holm, CANNOT_TELL)
        else:
            result[name] = Comparison(p, p_holm, DIFFERENT if p_holm < alpha else WITHIN_NOISE)
    return result
