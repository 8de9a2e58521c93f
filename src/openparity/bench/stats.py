"""Statistics that decide "parity": CIs (clustered where items share a context), paired
differences, McNemar, TOST equivalence, power, Holm correction, and the verdict words.

Every test here keeps its error rate at the sizes users run, shown by the seeded simulations
in tests/bench/test_stats_simulation.py: exact or score methods for 0/1 scores (Clopper-
Pearson, exact McNemar, Tango's score TOST and interval for paired data, Miettinen-Nurminen
for a published number of known n), and t references with CR2 cluster-robust errors and
Bell-McCaffrey degrees of freedom where items share a context or carry partial credit.

Scores are per item in [0, 1] (an item's mean over its samples). Everything returns plain
numbers in score units (0.01 = one point); the report turns them into points.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
from scipy import stats as sps

ALPHA = 0.05
POWER = 0.80


@dataclass(frozen=True)
class Estimate:
    """A mean with its standard error and a (1 - alpha) confidence interval. `df` is the
    t reference's degrees of freedom (None: exact or score methods); `method` names how the
    interval was made. An interval that cannot be made (no spread, one cluster) is NaN."""

    mean: float
    se: float
    low: float
    high: float
    n: int
    clusters: int | None = None
    df: float | None = None
    method: str = ""

    @property
    def informative(self) -> bool:
        """False when the data carry no estimate of their own uncertainty."""
        return not (math.isnan(self.low) or math.isnan(self.high))


@dataclass(frozen=True)
class Tests:
    """A difference (open - reference) with its interval, the two-sided difference test and
    the TOST equivalence test for one margin, and the methods that produced them."""

    diff: Estimate
    p_difference: float
    p_equivalence: float
    method: str
    p_mcnemar: float | None = None  # the difference test, when it is the exact McNemar


def _independent_binary(clusters: Sequence[str] | None, *arrays: np.ndarray) -> bool:
    """0/1 scores on items that share no context: where exact and score methods apply."""
    binary = all(np.isin(values, (0.0, 1.0)).all() for values in arrays)
    return binary and (clusters is None or len(set(clusters)) == len(arrays[0]))


def _cluster_ids(clusters: Sequence[str] | None, n: int) -> np.ndarray:
    """Integer cluster labels; every item its own cluster when none are given."""
    if clusters is None:
        return np.arange(n)
    return np.unique(np.asarray(clusters), return_inverse=True)[1]


def cluster_robust(values: Sequence[float], clusters: Sequence[str] | None = None) -> Estimate:
    """Mean with the CR2 (bias-reduced) cluster-robust SE and Bell-McCaffrey degrees of
    freedom; without clusters this is the ordinary SE with n - 1 df. The interval is left NaN
    here (see `t_interval`)."""
    x = np.asarray(values, dtype=float)
    n = len(x)
    ids = _cluster_ids(clusters, n)
    sizes = np.bincount(ids).astype(float)
    g = len(sizes)
    mean = float(x.mean())
    grouped = None if clusters is None else g
    if g < 2:
        return Estimate(mean, math.nan, math.nan, math.nan, n, grouped, None)
    resid = np.bincount(ids, weights=x - mean)
    h = sizes / n
    se = math.sqrt(float((resid**2 / (1 - h)).sum()) / n**2)
    q = sizes**2 / ((1 - h) * n**3)
    t2 = float((sizes**2).sum() / n**4 + q.sum() ** 2 - (q**2).sum())
    df = 1.0 / (n**2 * t2)  # Bell-McCaffrey; exactly G - 1 for equal cluster sizes
    return Estimate(mean, se, math.nan, math.nan, n, grouped, df)


def t_interval(est: Estimate, alpha: float = ALPHA) -> Estimate:
    """`est` with its t interval (NaN when the SE is 0 or undefined: no spread is no evidence
    of precision)."""
    what = "t" if est.clusters is None else "CR2 cluster-robust t, Bell-McCaffrey df"
    method = f"{what} ({est.df:.1f} df)" if est.df else what
    if not est.se > 0 or est.df is None:
        return replace(est, low=math.nan, high=math.nan, method=method + ", no spread")
    half = float(sps.t.ppf(1 - alpha / 2, est.df)) * est.se
    return replace(est, low=est.mean - half, high=est.mean + half, method=method)


def mean_ci(
    scores: Sequence[float], clusters: Sequence[str] | None = None, alpha: float = ALPHA
) -> Estimate:
    """Mean score with its CI: Clopper-Pearson (exact, never below nominal coverage) for
    independent 0/1 scores, else the cluster-robust t interval."""
    values = np.asarray(scores, dtype=float)
    n = len(values)
    if n == 0:
        return Estimate(math.nan, math.nan, math.nan, math.nan, 0)
    if _independent_binary(clusters, values):
        from statsmodels.stats.proportion import proportion_confint

        k = int(values.sum())
        low, high = proportion_confint(k, n, alpha=alpha, method="beta")
        se = math.sqrt(values.mean() * (1 - values.mean()) / n)
        return Estimate(k / n, se, float(low), float(high), n, method="Clopper-Pearson")
    return t_interval(cluster_robust(values, clusters), alpha)


# --- paired 0/1 scores: Tango's score method, continuity-corrected -----------------------


def _tango_z(b, c, n, d0, correction: float = 0.5):
    """Tango's (1998) score statistic for H0: p(open only) - p(closed only) = d0, from b
    items only the open model got right and c only the closed one did, of n; with a half-unit
    continuity correction. Vectorised over b, c and d0. Uses the restricted MLE of
    p(closed only) under H0 (the root of 2n x^2 - [(b+c) - d0(2n - b + c)] x - c d0(1-d0))."""
    b, c, d0 = (np.asarray(v, dtype=float) for v in (b, c, d0))
    quad_b = -(b + c) + d0 * (2 * n - b + c)
    quad_c = -c * d0 * (1 - d0)
    x = (-quad_b + np.sqrt(np.maximum(quad_b**2 - 8 * n * quad_c, 0.0))) / (4 * n)
    var = n * (2 * x + d0 * (1 - d0))
    num = b - c - n * d0
    num = np.sign(num) * np.maximum(np.abs(num) - correction, 0.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        z = num / np.sqrt(var)
    return np.where(var > 0, z, 0.0)  # no variance under H0 and nothing observed against it


def tango_tost(b, c, n: int, margin: float):
    """TOST p-value that |p_open - p_closed| < margin for paired 0/1 scores (vectorised)."""
    p_low = sps.norm.sf(_tango_z(b, c, n, -margin))  # H0: d <= -margin
    p_high = sps.norm.cdf(_tango_z(b, c, n, margin))  # H0: d >= +margin
    return np.maximum(p_low, p_high)


def tango_interval(b, c, n: int, alpha: float = ALPHA):
    """The continuity-corrected Tango score interval of the paired difference (vectorised):
    every d0 its two-sided test does not reject, found by bisection."""
    b, c = np.asarray(b, dtype=float), np.asarray(c, dtype=float)
    z = float(sps.norm.ppf(1 - alpha / 2))
    d = (b - c) / n

    def edge(sign: float):
        inside, outside = d.copy(), np.full_like(d, sign * (1 - 1e-12))
        for _ in range(60):  # |Z| grows as d0 moves away from d: bisect to the boundary
            mid = (inside + outside) / 2
            rejected = np.abs(_tango_z(b, c, n, mid)) > z
            inside, outside = np.where(rejected, inside, mid), np.where(rejected, mid, outside)
        return inside

    return edge(-1.0), edge(1.0)


def mcnemar_exact(a: Sequence[float], b: Sequence[float]) -> float:
    """Exact McNemar p-value for paired 0/1 scores (binomial test on the discordant pairs)."""
    x, y = np.asarray(a) > 0.5, np.asarray(b) > 0.5
    only_a, only_b = int((x & ~y).sum()), int((~x & y).sum())
    if only_a + only_b == 0:
        return 1.0
    return float(sps.binomtest(only_a, only_a + only_b, 0.5).pvalue)


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


def paired_tests(
    a: Sequence[float],
    b: Sequence[float],
    margin: float,
    clusters: Sequence[str] | None = None,
    alpha: float = ALPHA,
) -> Tests:
    """open (a) - closed (b) over the same items. Independent 0/1 scores: exact McNemar and
    Tango's score TOST and interval, which keep their error rates when the models rarely
    disagree. Otherwise (partial credit, or items sharing a context): the cluster-robust t."""
    x, y = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    n = len(x)
    if _independent_binary(clusters, x, y):
        only_a, only_b = int(((x == 1) & (y == 0)).sum()), int(((x == 0) & (y == 1)).sum())
        low, high = tango_interval(only_a, only_b, n, alpha)
        mean = (only_a - only_b) / n
        se = math.sqrt(max((only_a + only_b) / n - mean**2, 0.0) / n)
        diff = Estimate(mean, se, float(low), float(high), n, method="Tango score interval")
        p_eq = float(tango_tost(only_a, only_b, n, margin))
        p_mcnemar = mcnemar_exact(x, y)
        return Tests(diff, p_mcnemar, p_eq, "exact McNemar; Tango score TOST", p_mcnemar)
    diff = t_interval(cluster_robust(x - y, clusters), alpha)
    return Tests(diff, t_pvalue(diff), t_tost(diff, margin), diff.method)


def t_pvalue(est: Estimate, null: float = 0.0) -> float:
    """Two-sided t-test of est.mean = null; 1 when the data hold no estimate of spread."""
    if not est.se > 0 or est.df is None:
        return 1.0
    return float(2 * sps.t.sf(abs(est.mean - null) / est.se, est.df))


def t_tost(est: Estimate, margin: float, center: float = 0.0) -> float:
    """TOST p-value that |mean - center| < margin with the t reference; 1 without spread."""
    if not est.se > 0 or est.df is None:
        return 1.0
    d = est.mean - center
    p_low = sps.t.sf((d + margin) / est.se, est.df)  # H0: d <= -margin
    p_high = sps.t.cdf((d - margin) / est.se, est.df)  # H0: d >= +margin
    return float(max(p_low, p_high))


# --- one run against a published number ---------------------------------------------------


def target_tests(
    scores: Sequence[float],
    target: float,
    margin: float,
    target_n: int | None = None,
    clusters: Sequence[str] | None = None,
    alpha: float = ALPHA,
) -> Tests:
    """open - target, unpaired. A target measured on `target_n` items is itself an estimate:
    its sampling error joins the test (Miettinen-Nurminen score tests for two independent
    proportions). Without its n the target is taken as exact (one-sample exact binomial)."""
    x = np.asarray(scores, dtype=float)
    n = len(x)
    binary = _independent_binary(clusters, x)
    if binary and target_n:
        with warnings.catch_warnings():  # statsmodels' cubic root warns at 0 % and 100 %
            warnings.simplefilter("ignore", RuntimeWarning)
            return _two_proportion_tests(x, target, margin, target_n, alpha)
    if binary:
        k = int(x.sum())
        own = mean_ci(x, alpha=alpha)
        diff = replace(own, mean=own.mean - target, low=own.low - target, high=own.high - target)
        p_diff, p_eq = binomial_tests(k, n, target, margin)
        return Tests(diff, p_diff, p_eq, "exact binomial against a published number of unknown n")
    own = cluster_robust(x, clusters)
    if target_n:  # partial credit against a measured number: add its (Bernoulli-bounded) error
        own = replace(own, se=math.sqrt(own.se**2 + target * (1 - target) / target_n))
    diff = t_interval(replace(own, mean=own.mean - target), alpha)
    method = diff.method + " against a published number"
    return Tests(diff, t_pvalue(diff), t_tost(diff, margin), method)


def _two_proportion_tests(
    x: np.ndarray, target: float, margin: float, target_n: int, alpha: float
) -> Tests:
    """Score tests and interval for open k/n against a published k_t/target_n."""
    from statsmodels.stats.proportion import (
        confint_proportions_2indep,
        test_proportions_2indep,
        tost_proportions_2indep,
    )

    n, k, k_t = len(x), int(x.sum()), target * target_n  # a published % need not be k/n
    interval = "Miettinen-Nurminen score"
    try:
        low, high = confint_proportions_2indep(
            k, n, k_t, target_n, method="score", compare="diff", alpha=alpha
        )
    except ValueError:  # statsmodels' root search fails at 0 % / 100 %: Newcombe's hybrid
        interval = "Newcombe hybrid score"
        low, high = confint_proportions_2indep(
            k, n, k_t, target_n, method="newcomb", compare="diff", alpha=alpha
        )
    mean = k / n - k_t / target_n
    se = math.sqrt(k / n * (1 - k / n) / n + target * (1 - target) / target_n)
    diff = Estimate(mean, se, float(low), float(high), n, method=interval)
    p_diff = test_proportions_2indep(k, n, k_t, target_n, method="score", compare="diff").pvalue
    p_eq = tost_proportions_2indep(
        k, n, k_t, target_n, -margin, margin, method="score", compare="diff"
    ).pvalue
    method = f"unpaired score tests against a published {target * 100:.1f} % of {target_n}"
    return Tests(diff, float(p_diff), float(p_eq), method)


def published_interval(score: float, n: int, alpha: float = ALPHA) -> Estimate:
    """The exact (Clopper-Pearson) interval of a score published as measured on n items."""
    from statsmodels.stats.proportion import proportion_confint

    low, high = proportion_confint(score * n, n, alpha=alpha, method="beta")
    se = math.sqrt(score * (1 - score) / n)
    return Estimate(score, se, float(low), float(high), n, method="Clopper-Pearson")


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
    p = np.asarray(pvalues, dtype=float)
    m = len(p)
    order = np.argsort(p, kind="stable")
    stepped = np.maximum.accumulate((m - np.arange(m)) * p[order])  # step-down, monotone
    adjusted = np.empty(m)
    adjusted[order] = np.minimum(stepped, 1.0)
    return [float(v) for v in adjusted]


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
    needed = items_needed(sd, margin, alpha) if sd > 0 and diff.n > 0 else None
    if not diff.informative:
        why = "one cluster" if diff.clusters == 1 else "no spread in the differences"
        return Verdict(
            "inconclusive",
            f"insufficient information ({why}): no interval, no test"
            + (f"; needs ~{needed} items to prove ±{margin * 100:.1f} points" if needed else ""),
        )
    if needed and needed > diff.n:
        return Verdict(
            "inconclusive",
            f"underpowered: needs ~{needed} items to prove ±{margin * 100:.1f} points,"
            f" has {diff.n}",
        )
    return Verdict("inconclusive", "neither a difference nor equivalence is shown")
