"""Statistics that decide "parity": CIs (clustered where items share a context), paired
differences, McNemar, TOST equivalence, power, Holm correction, and the verdict words.

Every test here keeps its error rate at the sizes users run, shown by the seeded simulations
in tests/bench/test_stats_simulation.py: exact or score methods for 0/1 scores (Clopper-
Pearson, Tango's score test, TOST and interval for paired data, one method for the verdict
and the interval it prints, Miettinen-Nurminen for a published number of known n); for
paired differences in clusters a cluster sign-flip test of the CR2 t statistic, inverted for
its intervals (exact when cluster effects are symmetric, whatever their number, sizes or
shape); for independent continuous differences the t reference with Hall's skewness
correction, and no claim where a sample is too skewed for its size.

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

from openparity.bench.errors import ScoresError

ALPHA = 0.05
POWER = 0.80
# a standard error below this (in score units) is float round-off, not spread: 30 items all
# 0.3 against all 0.1 differ by 0.19999999999999998 or 0.2, an SE of 1e-17
SPREAD_TOLERANCE = 1e-12
# the continuity correction of Tango's score test of no difference and of the printed
# interval it inverts (McNemar's classic one unit): with it the test keeps its size when the
# models disagree on a handful of items, where the half-unit version reaches 6 %
DIFFERENCE_CORRECTION = 1.0
# independent continuous differences whose sample skewness exceeds this times sqrt(n) are too
# skewed for any t-based claim at that n (Hall's correction included): "inconclusive"
SKEW_LIMIT = 0.25


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
    no_interval: str = ""  # why the interval is NaN, when a method knows (too skewed for n...)

    @property
    def informative(self) -> bool:
        """False when the data carry no estimate of their own uncertainty."""
        return not (math.isnan(self.low) or math.isnan(self.high))

    @property
    def why_no_interval(self) -> str:
        """Why there is no interval, in words ("" when there is one)."""
        if self.informative:
            return ""
        if self.no_interval:
            return self.no_interval
        if self.n < 2:
            return "one item is no evidence of precision"
        return "every value is the same, so their spread says nothing of precision"


@dataclass(frozen=True)
class Tests:
    """A difference (open - reference) with its interval, the two-sided difference test and
    the TOST equivalence test for one margin, and the methods that produced them."""

    diff: Estimate
    p_difference: float
    p_equivalence: float
    method: str
    # the (1 - 2 alpha) interval the TOST inverts: the one to print beside "equivalent"
    equivalence_interval: Estimate | None = None


def checked_scores(values: Sequence[float], what: str = "scores") -> np.ndarray:
    """`values` as floats, or a ScoresError naming what is wrong: none at all, NaN or
    infinity, or outside [0, 1] (a scorer's bug, never something to average over)."""
    x = np.asarray(values, dtype=float)
    if x.size == 0:
        raise ScoresError(f"no {what} to compare", hint="score at least two items")
    bad = ~np.isfinite(x) | (x < 0) | (x > 1)
    if bad.any():
        first = int(np.flatnonzero(bad)[0])
        raise ScoresError(
            f"{int(bad.sum())} of {x.size} {what} are not numbers in [0, 1]"
            f" (item {first}: {float(x[first])!r})",
            hint="a scorer must return a score in [0, 1]; rescore the run after fixing it",
        )
    return x


def independent_items(clusters: Sequence[str] | None, n: int) -> bool:
    """No two of the n items share a context (no clusters, or every item its own)."""
    return clusters is None or len(set(clusters)) == n


def _independent_binary(clusters: Sequence[str] | None, *arrays: np.ndarray) -> bool:
    """0/1 scores on items that share no context: where exact and score methods apply."""
    binary = all(np.isin(values, (0.0, 1.0)).all() for values in arrays)
    return binary and independent_items(clusters, len(arrays[0]))


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
    if se < SPREAD_TOLERANCE:  # round-off, not spread: no estimate of precision
        se = 0.0
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
    if len(scores) == 0:
        return Estimate(math.nan, math.nan, math.nan, math.nan, 0)
    values = checked_scores(scores)
    n = len(values)
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


def tango_interval(b, c, n: int, alpha: float = ALPHA, correction: float = 0.5):
    """The continuity-corrected Tango score interval of the paired difference (vectorised):
    every d0 its two-sided test does not reject, found by bisection."""
    b, c = np.asarray(b, dtype=float), np.asarray(c, dtype=float)
    z = float(sps.norm.ppf(1 - alpha / 2))
    d = (b - c) / n

    def edge(sign: float):
        inside, outside = d.copy(), np.full_like(d, sign * (1 - 1e-12))
        for _ in range(60):  # |Z| grows as d0 moves away from d: bisect to the boundary
            mid = (inside + outside) / 2
            rejected = np.abs(_tango_z(b, c, n, mid, correction)) > z
            inside, outside = np.where(rejected, inside, mid), np.where(rejected, mid, outside)
        return inside

    return edge(-1.0), edge(1.0)


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
    x, y = checked_scores(a, "open scores"), checked_scores(b, "reference scores")
    if len(x) != len(y):
        raise ScoresError(f"{len(x)} open scores against {len(y)} reference scores: not paired")
    n = len(x)
    if _independent_binary(clusters, x, y):
        only_a, only_b = int(((x == 1) & (y == 0)).sum()), int(((x == 0) & (y == 1)).sum())
        cc = DIFFERENCE_CORRECTION
        low, high = tango_interval(only_a, only_b, n, alpha, correction=cc)
        mean = (only_a - only_b) / n
        se = math.sqrt(max((only_a + only_b) / n - mean**2, 0.0) / n)
        method = "Tango score test and interval"
        diff = Estimate(mean, se, float(low), float(high), n, method=method)
        p_diff = float(2 * sps.norm.sf(abs(float(_tango_z(only_a, only_b, n, 0.0, cc)))))
        p_eq = float(tango_tost(only_a, only_b, n, margin))
        low90, high90 = tango_interval(only_a, only_b, n, 2 * alpha)
        tost_ci = replace(diff, low=float(low90), high=float(high90), method="Tango score TOST")
        return Tests(diff, p_diff, p_eq, f"{method}; Tango score TOST", tost_ci)
    if independent_items(clusters, n):
        return skew_corrected_tests(x - y, margin, alpha)
    return sign_flip_tests(x - y, clusters, margin, alpha)


# --- differences in clusters: a cluster sign-flip test of the CR2 t statistic ---------------

ALL_FLIPS_UP_TO = 11  # clusters; beyond, SIGN_FLIPS seeded random flips (and the identity)
SIGN_FLIPS = 1999


def _flips(g: int) -> np.ndarray:
    """Every sign pattern over g clusters, or a seeded sample of them plus the identity."""
    if g <= ALL_FLIPS_UP_TO:
        codes = np.arange(2**g)[:, None] >> np.arange(g)[None, :]
        return np.where(codes & 1, -1.0, 1.0)
    drawn = np.random.default_rng(20261206).choice([-1.0, 1.0], size=(SIGN_FLIPS, g))
    return np.vstack([np.ones((1, g)), drawn])


class _SignFlip:
    """The CR2 t statistic of mean(d) - mu0 and its sign-flip distribution: under H0 the
    clusters' sums of d - mu0 are symmetric about 0 (a cluster effect on the difference as
    likely one way as the other), so flipping whole clusters' signs gives its exact null
    distribution whatever the clusters' number, sizes or effects. CR2 with Bell-McCaffrey t
    reached 8-12 % at 5-10 clusters with two-peaked cluster effects; this keeps 5 %. With 5
    clusters or fewer no two-sided p falls below 0.0625: they cannot show a difference.

    For every sign pattern s, mean(d*) - mu0 = (s.T - mu0 s.m) / n (T: cluster sums of d,
    m: sizes) and the CR2 variance is a quadratic in mu0, so each mu0 costs one pass over
    the patterns, not over patterns x clusters."""

    def __init__(self, d: np.ndarray, clusters: Sequence[str]) -> None:
        _, inverse = np.unique(np.asarray(clusters), return_inverse=True)
        sizes = np.bincount(inverse).astype(float)
        totals = np.bincount(inverse, weights=d)
        n = float(len(d))
        flips = _flips(len(sizes))
        self.a, self.b = flips @ totals / n, flips @ sizes / n  # shift = a - mu0 * b
        p = flips * totals - np.outer(self.a, sizes)  # cluster residual sums: p - mu0 * q
        q = flips * sizes - np.outer(self.b, sizes)
        weight = 1 / (1 - sizes / n) / n**2
        self.c0 = (p**2 * weight).sum(axis=1)
        self.c1 = -2 * (p * q * weight).sum(axis=1)
        self.c2 = (q**2 * weight).sum(axis=1)

    def _null(self, mu0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The statistic of every sign pattern at each of `mu0` (rows: patterns, row 0 the
        observed one), and the tolerance within which a pattern ties with the observed."""
        mu = np.atleast_1d(np.asarray(mu0, dtype=float))[None, :]
        var = np.maximum(self.c0[:, None] + self.c1[:, None] * mu + self.c2[:, None] * mu**2, 0)
        se = np.sqrt(var)
        safe = np.where(se > SPREAD_TOLERANCE, se, np.inf)
        null = (self.a[:, None] - mu * self.b[:, None]) / safe
        observed = null[0]
        # 0/1 scores make many patterns tie with the observed one; a tie stays a tie a hair
        # away from mu0 (else the p-value jumps there and the interval misses mu0)
        return null, observed, 1e-7 * np.maximum(1.0, np.abs(observed))

    def p_two_sided(self, mu0) -> np.ndarray:
        null, observed, tol = self._null(mu0)
        return (np.abs(null) >= np.abs(observed) - tol).mean(axis=0)

    def p_one_sided(self, mu0) -> tuple[np.ndarray, np.ndarray]:
        """(H1: mean > mu0, H1: mean < mu0) p-values."""
        null, observed, tol = self._null(mu0)
        return (null >= observed - tol).mean(axis=0), (null <= observed + tol).mean(axis=0)

    @staticmethod
    def bound(start: float, sign: float, accepted) -> float:
        """The outer edge of {mu0 : accepted(mu0)} from `start` toward sign * infinity, within
        the differences' possible range [-1, 1]: the farthest accepted point of a grid, then
        bisection to the next rejected one (so an accepted island beyond a rejected gap is
        kept: the interval is the hull, never narrower than the test). `accepted` maps an
        array of mu0 to flags."""
        grid = start + (sign * 1.0 - start) * np.linspace(0.0, 1.0, 33)
        ok = accepted(grid)
        last = int(np.flatnonzero(ok).max()) if ok.any() else 0
        if last == len(grid) - 1:
            return float(grid[-1])
        inside, outside = float(grid[last]), float(grid[last + 1])
        for _ in range(18):  # to 1/32/2^18 of the range: 2e-7 of a score
            mid = (inside + outside) / 2
            inside, outside = (mid, outside) if accepted(mid)[0] else (inside, mid)
        return inside


def sign_flip_tests(d: np.ndarray, clusters: Sequence[str], margin: float, alpha: float) -> Tests:
    """Difference test, its interval, TOST and the TOST's interval for differences in
    clusters, all by inverting one cluster sign-flip test (`_SignFlip`)."""
    est = cluster_robust(d, clusters)
    g = est.clusters or 0
    method = f"cluster sign-flip test of the CR2 t ({g} clusters)"
    if not est.se > 0:
        empty = replace(est, method=method + ", no spread")
        return Tests(empty, 1.0, 1.0, empty.method, empty)
    flip = _SignFlip(d, clusters)
    p_diff = float(flip.p_two_sided(0.0)[0])
    p_eq = float(max(flip.p_one_sided(-margin)[0][0], flip.p_one_sided(margin)[1][0]))

    def interval(two_sided: bool, level_alpha: float) -> Estimate:
        def accepted(mu0) -> np.ndarray:
            if two_sided:
                return flip.p_two_sided(mu0) >= level_alpha
            return np.minimum(*flip.p_one_sided(mu0)) >= level_alpha

        low, high = flip.bound(est.mean, -1.0, accepted), flip.bound(est.mean, 1.0, accepted)
        # the values the verdict is about (0, the margins) are tested exactly; where their
        # patterns tie with the observed one they may be accepted points a bisection steps
        # over: the hull takes them in
        for point in (0.0, -margin, margin):
            if accepted(point)[0]:
                low, high = min(low, point), max(high, point)
        if not accepted(est.mean)[0] or (low, high) == (-1.0, 1.0):
            # no sign pattern is rare enough at this level: nothing can be excluded
            why = f"too few clusters for a {(1 - level_alpha) * 100:.0f}% interval"
            return replace(
                est, low=math.nan, high=math.nan, method=f"{method}, {why}", no_interval=why
            )
        return replace(est, low=low, high=high, method=method)

    # The printed interval is the hull of the values the test accepts. Where the sign-flip
    # distribution's steps make that set non-convex, a value may be rejected inside the hull.
    tests = Tests(interval(True, alpha), p_diff, p_eq, method, interval(False, alpha))
    return _verdict_follows_interval(tests, margin, alpha)


def _verdict_follows_interval(tests: Tests, margin: float, alpha: float) -> Tests:
    """Make the p-values agree with the intervals printed: a test that rejects 0 (or proves
    the margin) while its interval says otherwise is reported at alpha, not below. Only
    claims are withdrawn, so the error rates stay where the simulations show them."""
    diff, tost_ci = tests.diff, tests.equivalence_interval
    p_diff, p_eq = tests.p_difference, tests.p_equivalence
    if p_diff < alpha and diff.informative and diff.low <= 0 <= diff.high:
        p_diff = alpha
    inside = (
        tost_ci is not None
        and tost_ci.informative
        and -margin < tost_ci.low
        and tost_ci.high < margin
    )
    if p_eq < alpha and not inside:
        p_eq = alpha
    if tost_ci is not None and inside and p_eq >= alpha:  # the interval claims, the test not
        tost_ci = replace(tost_ci, low=min(tost_ci.low, -margin), high=max(tost_ci.high, margin))
    if diff.informative and not diff.low <= 0 <= diff.high and p_diff >= alpha:
        diff = replace(diff, low=min(diff.low, 0.0), high=max(diff.high, 0.0))
    return replace(
        tests, diff=diff, p_difference=p_diff, p_equivalence=p_eq, equivalence_interval=tost_ci
    )


# --- independent continuous differences: the t test with Hall's skewness correction --------


def _hall(t, a: float):
    """Hall's (1992) monotone transformation of a studentized mean, g(T) = T + a T^2 +
    a^2 T^3 / 3 + a / 2 with a = skewness / (3 sqrt(n)): it removes the skewness term of the
    t statistic's Edgeworth expansion, which makes a one-sided t claim on left-skewed data
    twice as frequent as it promises."""
    if abs(a) < 1e-12:
        return t
    return ((1 + a * t) ** 3 - 1) / (3 * a) + a / 2


def _hall_inverse(g: float, a: float) -> float:
    if abs(a) < 1e-12:
        return g
    return float((np.cbrt(1 + 3 * a * (g - a / 2)) - 1) / a)


def skew_corrected_tests(d: np.ndarray, margin: float, alpha: float = ALPHA) -> Tests:
    """Difference test, interval and TOST for independent continuous differences `d`: the t
    reference with Hall's skewness correction. Where the sample is too skewed for its size
    (|skewness| > SKEW_LIMIT sqrt(n)) no claim holds its rate: no interval, no test."""
    n = len(d)
    est = cluster_robust(d)
    if not est.se > 0 or est.df is None:
        empty = t_interval(est, alpha)
        return Tests(empty, 1.0, 1.0, "t, no spread", empty)
    skew = float(sps.skew(d, bias=False)) if n > 2 else 0.0
    if abs(skew) > SKEW_LIMIT * math.sqrt(n):
        why = f"too skewed for n (skewness {skew:+.1f} at n={n})"
        method = f"t, {why}"
        empty = replace(est, method=method, no_interval=why)
        return Tests(empty, 1.0, 1.0, method, empty)
    a = skew / (3 * math.sqrt(n))
    method = f"t with Hall's skewness correction ({est.df:.0f} df, skewness {skew:+.2f})"

    def interval(level_alpha: float) -> Estimate:
        c = float(sps.t.ppf(1 - level_alpha / 2, est.df))
        t_low, t_high = _hall_inverse(-c, a), _hall_inverse(c, a)
        low, high = est.mean - t_high * est.se, est.mean - t_low * est.se
        return replace(est, low=low, high=high, method=method)

    def studentized(null: float) -> float:
        return float(_hall((est.mean - null) / est.se, a))

    p_diff = float(2 * sps.t.sf(abs(studentized(0.0)), est.df))
    p_low = sps.t.sf(studentized(-margin), est.df)  # H0: d <= -margin
    p_high = sps.t.cdf(studentized(margin), est.df)  # H0: d >= +margin
    p_eq = float(max(p_low, p_high))
    return Tests(interval(alpha), p_diff, p_eq, method, interval(2 * alpha))


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
    x = checked_scores(scores)
    n = len(x)
    binary = _independent_binary(clusters, x)
    if binary and target_n:
        with warnings.catch_warnings():  # statsmodels' cubic root warns at 0 % and 100 %
            warnings.simplefilter("ignore", RuntimeWarning)
            return _two_proportion_tests(x, target, margin, target_n, alpha)
    if binary:
        k = int(x.sum())
        diff, tost_ci = (
            replace(own, mean=own.mean - target, low=own.low - target, high=own.high - target)
            for own in (mean_ci(x, alpha=alpha), mean_ci(x, alpha=2 * alpha))
        )
        p_diff, p_eq = binomial_tests(k, n, target, margin)
        method = "exact binomial against a published number of unknown n"
        return Tests(diff, p_diff, p_eq, method, tost_ci)
    own = cluster_robust(x, clusters)
    if target_n and own.se > 0 and own.df is not None:
        # partial credit against a measured number: add its (Bernoulli-bounded) error, with
        # Welch-Satterthwaite degrees of freedom for the combined variance. Without spread of
        # its own the run says nothing about its precision: the target's error cannot stand
        # in for it (ten identical scores are not evidence of equivalence).
        target_var = target * (1 - target) / target_n
        total = own.se**2 + target_var
        df = total**2 / (own.se**4 / own.df + target_var**2 / max(target_n - 1, 1))
        own = replace(own, se=math.sqrt(total), df=df)
    diff = t_interval(replace(own, mean=own.mean - target), alpha)
    method = diff.method + " against a published number"
    tost_ci = t_interval(diff, 2 * alpha)
    return Tests(diff, t_pvalue(diff), t_tost(diff, margin), method, tost_ci)


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

    def bounds(level_alpha: float) -> tuple[str, float, float]:
        try:
            low, high = confint_proportions_2indep(
                k, n, k_t, target_n, method="score", compare="diff", alpha=level_alpha
            )
            return "Miettinen-Nurminen score", float(low), float(high)
        except ValueError:  # statsmodels' root search fails at 0 % / 100 %: Newcombe's hybrid
            low, high = confint_proportions_2indep(
                k, n, k_t, target_n, method="newcomb", compare="diff", alpha=level_alpha
            )
            return "Newcombe hybrid score", float(low), float(high)

    # The score tests alone reach 6-7 % at 20-50 items against a number measured on thousands
    # (they tend to the one-sample Wilson test, loose at small n). A claim also needs the exact
    # binomial test against the published point, which is conservative there; each interval
    # is the hull of the two tests' intervals, so verdict and interval stay one method.
    mean = k / n - k_t / target_n
    se = math.sqrt(k / n * (1 - k / n) / n + target * (1 - target) / target_n)

    def hull(level_alpha: float) -> Estimate:
        interval, low, high = bounds(level_alpha)
        exact = mean_ci(x, alpha=level_alpha)
        low, high = min(low, exact.low - target), max(high, exact.high - target)
        return Estimate(mean, se, low, high, n, method=f"{interval} and Clopper-Pearson hull")

    p_score = test_proportions_2indep(k, n, k_t, target_n, method="score", compare="diff").pvalue
    p_eq_score = tost_proportions_2indep(
        k, n, k_t, target_n, -margin, margin, method="score", compare="diff"
    ).pvalue
    p0 = min(max(target, 1e-12), 1 - 1e-12)
    p_exact = min(1.0, 2 * min(sps.binom.cdf(k, n, p0), sps.binom.sf(k - 1, n, p0)))
    p_eq_exact = binomial_tests(k, n, target, margin)[1]
    method = (
        f"unpaired score tests against a published {target * 100:.1f} % of {target_n},"
        " confirmed by exact binomial tests against it"
    )
    p_diff, p_eq = float(max(p_score, p_exact)), float(max(p_eq_score, p_eq_exact))
    tests = Tests(hull(alpha), p_diff, p_eq, method, hull(2 * alpha))
    return _verdict_follows_interval(tests, margin, alpha)


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


def detectable_difference(
    sd: float, n: int, alpha: float = ALPHA, power: float = POWER, fixed_var: float = 0.0
) -> float:
    """Smallest true difference a two-sided test finds with `power` at this n. `sd` is the
    per-item SD for planning (times the square root of the design effect where items share
    a context); `fixed_var` is a variance more items do not shrink (a published number's)."""
    z = sps.norm.ppf(1 - alpha / 2) + sps.norm.ppf(power)
    return z * math.sqrt(sd**2 / n + fixed_var)


def provable_margin(
    sd: float, n: int, alpha: float = ALPHA, power: float = POWER, fixed_var: float = 0.0
) -> float:
    """Smallest equivalence margin TOST proves with `power` at this n when the truth is 0."""
    z = sps.norm.ppf(1 - alpha) + sps.norm.ppf(1 - (1 - power) / 2)
    return z * math.sqrt(sd**2 / n + fixed_var)


def items_needed(
    sd: float, margin: float, alpha: float = ALPHA, power: float = POWER, fixed_var: float = 0.0
) -> int | None:
    """Items needed for TOST to prove `margin` with `power` (true difference 0); None when no
    number of items can (the fixed variance alone is too large for the margin)."""
    z = sps.norm.ppf(1 - alpha) + sps.norm.ppf(1 - (1 - power) / 2)
    room = margin**2 - z**2 * fixed_var
    if room <= 0:
        return None
    return math.ceil(z**2 * sd**2 / room)


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
    equivalence: Estimate | None = None,
    fixed_var: float = 0.0,
    available: int | None = None,
) -> Verdict:
    """The verdict for open - closed (or open - target) with an equivalence margin. An
    "equivalent" names the (1 - 2 alpha) interval its TOST inverts (`equivalence`), not the
    (1 - alpha) one printed beside a difference, which may cross the margin. `available`: the
    task's size, so a margin that even every item could not prove is said to be so."""
    if p_equivalence < alpha:
        shown = ""
        if equivalence is not None and equivalence.informative:
            level = round((1 - 2 * alpha) * 100)
            shown = f"; {level}% CI [{equivalence.low * 100:+.1f}, {equivalence.high * 100:+.1f}]"
        return Verdict(
            "equivalent",
            f"within ±{margin * 100:.1f} points (TOST p={p_equivalence:.3g}{shown})",
        )
    if p_difference < alpha:
        word = "open better" if diff.mean > 0 else "open worse"
        return Verdict(word, f"difference {diff.mean * 100:+.1f} points (p={p_difference:.3g})")
    needed = items_needed(sd, margin, alpha, fixed_var=fixed_var) if sd > 0 and diff.n > 0 else 0
    if needed is None:
        return Verdict(
            "inconclusive",
            f"±{margin * 100:.1f} points cannot be proven at any number of items: the"
            " reference number's own sampling error alone is too large for that margin",
        )
    if not diff.informative:
        why = diff.no_interval or (
            "one cluster" if diff.clusters == 1 else "no spread in the differences"
        )
        return Verdict(
            "inconclusive",
            f"insufficient information ({why}): no interval, no test"
            + (f"; needs ~{needed} items to prove ±{margin * 100:.1f} points" if needed else ""),
        )
    if needed and available and needed > available:
        return Verdict(
            "inconclusive",
            f"±{margin * 100:.1f} points cannot be proven on this task at any size: it would"
            f" need ~{needed} items and the task has {available}",
        )
    if needed and needed > diff.n:
        return Verdict(
            "inconclusive",
            f"underpowered: needs ~{needed} items to prove ±{margin * 100:.1f} points,"
            f" has {diff.n}",
        )
    return Verdict("inconclusive", "neither a difference nor equivalence is shown")
