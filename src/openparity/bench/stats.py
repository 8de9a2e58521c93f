"""Statistics that decide "parity": CIs (clustered where items share a context), paired
differences, McNemar, TOST equivalence, power, Holm correction, and the verdict words.

Scores are per item in [0, 1] (an item's mean over its samples). Everything returns plain
numbers in score units (0.01 = one point); the report turns them into points.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats as sps

ALPHA = 0.05
POWER = 0.80


@dataclass(frozen=True)
class Estimate:
    """A mean with its standard error and a (1 - alpha) confidence interval."""

    mean: float
    se: float
    low: float
    high: float
    n: int
    clusters: int | None = None


def _cluster_se(values: np.ndarray, clusters: Sequence[str] | None) -> tuple[float, int | None]:
    """SE of the mean: iid, or cluster-robust (CR1, as statsmodels' cluster covariance)."""
    n = len(values)
    if clusters is None or len(set(clusters)) == n:
        return (float(values.std(ddof=1) / math.sqrt(n)) if n > 1 else math.nan), None
    residuals = values - values.mean()
    sums: dict[str, float] = {}
    for c, r in zip(clusters, residuals, strict=True):
        sums[c] = sums.get(c, 0.0) + float(r)
    g = len(sums)
    if g < 2:
        return math.nan, g
    variance = g / (g - 1) * sum(s * s for s in sums.values()) / n**2
    return math.sqrt(variance), g


def mean_ci(
    scores: Sequence[float], clusters: Sequence[str] | None = None, alpha: float = ALPHA
) -> Estimate:
    """Mean score with CI: Wilson for independent 0/1 scores, else normal with (clustered) SE."""
    values = np.asarray(scores, dtype=float)
    n = len(values)
    if n == 0:
        return Estimate(math.nan, math.nan, math.nan, math.nan, 0)
    mean = float(values.mean())
    se, g = _cluster_se(values, clusters)
    binary = bool(np.isin(values, (0.0, 1.0)).all())
    if binary and g is None:
        from statsmodels.stats.proportion import proportion_confint

        low, high = proportion_confint(int(values.sum()), n, alpha=alpha, method="wilson")
        return Estimate(mean, se, float(low), float(high), n)
    z = sps.norm.ppf(1 - alpha / 2)
    return Estimate(mean, se, mean - z * se, mean + z * se, n, g)


def paired_difference(
    a: Sequence[float],
    b: Sequence[float],
    clusters: Sequence[str] | None = None,
    alpha: float = ALPHA,
) -> Estimate:
    """Mean of a - b over the same items, with the paired (clustered) SE and normal CI."""
    diff = np.asarray(a, dtype=float) - np.asarray(b, dtype=float)
    mean = float(diff.mean())
    se, g = _cluster_se(diff, clusters)
    z = sps.norm.ppf(1 - alpha / 2)
    return Estimate(mean, se, mean - z * se, mean + z * se, len(diff), g)


def paired_bootstrap(
    a: Sequence[float],
    b: Sequence[float],
    clusters: Sequence[str] | None = None,
    *,
    resamples: int = 10_000,
    alpha: float = ALPHA,
    seed: int = 0,
) -> tuple[float, float]:
    """Percentile CI of mean(a - b), resampling items (or whole clusters when given)."""
    diff = np.asarray(a, dtype=float) - np.asarray(b, dtype=float)
    rng = np.random.default_rng(seed)
    if clusters is None:
        idx = rng.integers(0, len(diff), size=(resamples, len(diff)))
        means = diff[idx].mean(axis=1)
    else:
        labels, inverse = np.unique(np.asarray(clusters), return_inverse=True)
        sums = np.bincount(inverse, weights=diff)
        sizes = np.bincount(inverse)
        pick = rng.integers(0, len(labels), size=(resamples, len(labels)))
        means = sums[pick].sum(axis=1) / sizes[pick].sum(axis=1)
    low, high = np.quantile(means, [alpha / 2, 1 - alpha / 2])
    return float(low), float(high)


def mcnemar_exact(a: Sequence[float], b: Sequence[float]) -> float:
    """Exact McNemar p-value for paired 0/1 scores (binomial test on the discordant pairs)."""
    x, y = np.asarray(a) > 0.5, np.asarray(b) > 0.5
    only_a, only_b = int((x & ~y).sum()), int((~x & y).sum())
    if only_a + only_b == 0:
        return 1.0
    return float(sps.binomtest(only_a, only_a + only_b, 0.5).pvalue)


def difference_pvalue(estimate: Estimate, null: float = 0.0) -> float:
    """Two-sided z-test p-value of estimate.mean against `null`."""
    if not estimate.se > 0:
        return 1.0 if estimate.mean == null else 0.0
    return float(2 * sps.norm.sf(abs(estimate.mean - null) / estimate.se))


def tost_pvalue(estimate: Estimate, margin: float, center: float = 0.0) -> float:
    """TOST p-value that |mean - center| < margin (equivalence when it is below alpha)."""
    if not estimate.se > 0:
        return 0.0 if abs(estimate.mean - center) < margin else 1.0
    d = estimate.mean - center
    p_low = sps.norm.sf((d + margin) / estimate.se)  # H0: d <= -margin
    p_high = sps.norm.cdf((d - margin) / estimate.se)  # H0: d >= +margin
    return float(max(p_low, p_high))


def binomial_tests(successes: int, n: int, target: float, margin: float) -> tuple[float, float]:
    """Exact one-sample tests of a 0/1 accuracy against a fixed target.

    Returns (two-sided p that accuracy != target, TOST p that |accuracy - target| < margin).
    """
    p_diff = sps.binomtest(successes, n, target).pvalue
    low, high = target - margin, target + margin
    p_low = sps.binomtest(successes, n, low, alternative="greater").pvalue if low > 0 else 0.0
    p_high = sps.binomtest(successes, n, high, alternative="less").pvalue if high < 1 else 0.0
    return float(p_diff), float(max(p_low, p_high))


def detectable_difference(sd: float, n: int, alpha: float = ALPHA, power: float = POWER) -> float:
    """Smallest true difference a two-sided test finds with `power` at this n."""
    return (sps.norm.ppf(1 - alpha / 2) + sps.norm.ppf(power)) * sd / math.sqrt(n)


def provable_margin(sd: float, n: int, alpha: float = ALPHA, power: float = POWER) -> float:
    """Smallest equivalence margin TOST proves with `power` at this n when the truth is 0."""
    return (sps.norm.ppf(1 - alpha) + sps.norm.ppf(1 - (1 - power) / 2)) * sd / math.sqrt(n)


def items_needed(sd: float, margin: float, alpha: float = ALPHA, power: float = POWER) -> int:
    """Items needed for TOST to prove `margin` with `power` (true difference 0)."""
    z = sps.norm.ppf(1 - alpha) + sps.norm.ppf(1 - (1 - power) / 2)
    return math.ceil((z * sd / margin) ** 2)


def paired_sd(accuracy: float, correlation: float) -> float:
    """SD of per-item differences for two 0/1 scorers of equal accuracy and this correlation."""
    return math.sqrt(2 * accuracy * (1 - accuracy) * (1 - correlation))


def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm-adjusted p-values (family-wise error across tasks)."""
    if not pvalues:
        return []
    from statsmodels.stats.multitest import multipletests

    return [float(p) for p in multipletests(list(pvalues), method="holm")[1]]


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k from n samples with c correct (Chen et al., 2021)."""
    if k > n:
        raise ValueError(f"pass@{k} needs at least {k} samples, got {n}")
    if n - c < k:
        return 1.0
    return float(1.0 - np.prod(1.0 - k / np.arange(n - c + 1, n + 1)))


@dataclass(frozen=True)
class Verdict:
    word: str  # equivalent | open better | open worse | inconclusive
    explanation: str


def verdict(
    diff: Estimate,
    p_difference: float,
    p_equivalence: float,
    margin: float,
    sd: float,
    alpha: float = ALPHA,
) -> Verdict:
    """The verdict for open - closed (or open - target) with an equivalence margin."""
    if p_equivalence < alpha:
        return Verdict(
            "equivalent", f"within ±{margin * 100:.1f} points (TOST p={p_equivalence:.3g})"
        )
    if p_difference < alpha:
        word = "open better" if diff.mean > 0 else "open worse"
        return Verdict(word, f"difference {diff.mean * 100:+.1f} points (p={p_difference:.3g})")
    if sd > 0 and diff.n > 0:
        needed = items_needed(sd, margin, alpha)
        if needed > diff.n:
            return Verdict(
                "inconclusive",
                f"underpowered: needs ~{needed} items to prove ±{margin * 100:.1f} points,"
                f" has {diff.n}",
            )
    return Verdict("inconclusive", "neither a difference nor equivalence is shown")
