"""Statistics of reader studies.

Formulas
--------
Wilson score interval for ``k`` successes in ``n`` trials, ``p = k / n`` and
``z`` the normal quantile of the confidence level::

    centre = (p + z^2 / (2 n)) / (1 + z^2 / n)
    half   = z / (1 + z^2 / n) * sqrt(p (1 - p) / n + z^2 / (4 n^2))

Fleiss' kappa for ``N`` items each rated by ``m`` raters, ``n_ij`` raters
putting item ``i`` in category ``j``::

    P_i = (sum_j n_ij^2 - m) / (m (m - 1))        agreement on item i
    P   = mean_i P_i,   p_j = sum_i n_ij / (N m),   P_e = sum_j p_j^2
    kappa = (P - P_e) / (1 - P_e)

Cohen's kappa for two raters: ``(p_o - p_e) / (1 - p_e)`` with ``p_o`` the
observed agreement and ``p_e = sum_k p_1k p_2k`` the agreement expected from
each rater's category frequencies.

The exact binomial test and the Mann-Whitney U test come from scipy.
Undefined quantities (no data, no variation) are ``nan``.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Sequence
from dataclasses import dataclass

import numpy as np

NAN = float("nan")


def normal_quantile(confidence: float) -> float:
    """Two-sided normal quantile ``z`` of a confidence level (0.95 -> 1.96)."""
    from scipy.stats import norm

    return float(norm.ppf(0.5 + confidence / 2.0))


def wilson_interval(
    successes: int, n: int, confidence: float = 0.95
) -> tuple[float, float]:
    """Wilson score interval of a proportion; ``(nan, nan)`` when ``n`` is 0."""
    if n <= 0:
        return NAN, NAN
    if not 0 <= successes <= n:
        raise ValueError(f"successes={successes} must lie between 0 and n={n}")
    z = normal_quantile(confidence)
    p = successes / n
    denominator = 1.0 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half = z / denominator * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return max(0.0, centre - half), min(1.0, centre + half)


def binomial_p_value(successes: int, n: int, chance: float = 0.5) -> float:
    """Two-sided exact binomial test of ``successes`` in ``n`` against ``chance``."""
    if n <= 0:
        return NAN
    from scipy.stats import binomtest

    return float(
        binomtest(int(successes), int(n), chance, alternative="two-sided").pvalue
    )


def ratio(numerator: float, denominator: float) -> float:
    """``numerator / denominator``, ``nan`` when the denominator is 0."""
    return numerator / denominator if denominator else NAN


def fleiss_kappa(counts: np.ndarray | Sequence[Sequence[int]]) -> float:
    """Fleiss' kappa from an items x categories table of rater counts.

    Every item must be rated by the same number of raters (at least 2).
    """
    table = np.asarray(counts, dtype=float)
    if table.ndim != 2 or table.shape[0] == 0:
        return NAN
    raters = table.sum(axis=1)
    m = raters[0]
    if m < 2 or not np.all(raters == m):
        raise ValueError("every item must be rated by the same number (>= 2) of raters")
    n_items = table.shape[0]
    per_item = ((table**2).sum(axis=1) - m) / (m * (m - 1))
    observed = per_item.mean()
    shares = table.sum(axis=0) / (n_items * m)
    expected = float((shares**2).sum())
    if math.isclose(expected, 1.0):
        return NAN
    return float((observed - expected) / (1.0 - expected))


def cohen_kappa(first: Sequence[Hashable], second: Sequence[Hashable]) -> float:
    """Cohen's kappa of two raters' labels for the same items."""
    if len(first) != len(second):
        raise ValueError("both raters must label the same items")
    n = len(first)
    if n == 0:
        return NAN
    observed = sum(a == b for a, b in zip(first, second, strict=True)) / n
    categories = set(first) | set(second)
    expected = sum(
        (list(first).count(c) / n) * (list(second).count(c) / n) for c in categories
    )
    if math.isclose(expected, 1.0):
        return NAN
    return (observed - expected) / (1.0 - expected)


def kappa_table(
    labels: Sequence[Sequence[Hashable]], categories: Sequence[Hashable]
) -> np.ndarray:
    """Items x categories counts from per-item lists of raters' labels."""
    index = {c: i for i, c in enumerate(categories)}
    table = np.zeros((len(labels), len(categories)), dtype=int)
    for row, item in enumerate(labels):
        for label in item:
            table[row, index[label]] += 1
    return table


@dataclass(frozen=True)
class RatingTest:
    """Comparison of realism ratings of real and synthetic tiles.

    Attributes
    ----------
    u : float
        Mann-Whitney U of the real ratings against the synthetic ones.
    p_value : float
        Two-sided p-value.
    auc : float
        ``U / (n_real n_synthetic)``: the probability that a real tile is
        rated more realistic than a synthetic one (ties count half); 0.5
        means the ratings do not tell them apart.
    """

    u: float
    p_value: float
    auc: float


def rating_test(real: Sequence[float], synthetic: Sequence[float]) -> RatingTest:
    """Mann-Whitney U test (two-sided) between real and synthetic ratings."""
    if len(real) == 0 or len(synthetic) == 0:
        return RatingTest(NAN, NAN, NAN)
    from scipy.stats import mannwhitneyu

    result = mannwhitneyu(real, synthetic, alternative="two-sided")
    u = float(result.statistic)
    p_value = float(result.pvalue)
    return RatingTest(u, p_value, u / (len(real) * len(synthetic)))
