"""Seeded simulations that check the error rates `openparity.bench.stats` promises, on the
shipped functions themselves, at the sizes users run. The test suite asserts on them
(tests/bench/test_stats_simulation.py); `benchmarks/stats_error_rates.py` prints the tables.

Each function returns rows of (setting..., observed rate, Monte Carlo standard error).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
from scipy import stats as sps

from openparity.bench import stats

ALPHA = 0.05


@dataclass(frozen=True)
class Rate:
    """An observed error (or coverage) rate over `reps` seeded replicates."""

    setting: str
    rate: float
    reps: int

    @property
    def mc_se(self) -> float:
        return math.sqrt(max(self.rate * (1 - self.rate), 0.01 * 0.99) / self.reps)


def tost_size_paired_binary(
    sizes=(100, 300, 1000, 3000),
    discordance=(0.02, 0.05, 0.1, 0.3),
    margins=(0.012, 0.05),
    reps: int = 10_000,
    seed: int = 0,
) -> Iterator[Rate]:
    """P(declare equivalent | true difference = +margin) for paired 0/1 scores whose models
    disagree on `discordance` of the items (Tango's score TOST, the shipped function)."""
    rng = np.random.default_rng(seed)
    for margin in margins:
        for disc in discordance:
            if disc <= margin:
                continue  # a difference of `margin` needs at least that much disagreement
            only_open, only_closed = (disc + margin) / 2, (disc - margin) / 2
            for n in sizes:
                counts = rng.multinomial(n, [only_open, only_closed, 1 - disc], size=reps)
                p = stats.tango_tost(counts[:, 0], counts[:, 1], n, margin)
                yield Rate(
                    f"margin {margin:.3f} disagree {disc:.2f} n {n}",
                    float((p < ALPHA).mean()),
                    reps,
                )


def interval_coverage_paired_binary(
    sizes=(20, 100, 300, 1000, 3000),
    discordance=(0.02, 0.05, 0.1, 0.3),
    differences=(0.0, 0.01),
    reps: int = 4000,
    seed: int = 1,
) -> Iterator[Rate]:
    """Coverage of the printed 95% interval of a paired 0/1 difference (Tango score)."""
    rng = np.random.default_rng(seed)
    for disc in discordance:
        for d in differences:
            only_open, only_closed = (disc + d) / 2, (disc - d) / 2
            for n in sizes:
                counts = rng.multinomial(n, [only_open, only_closed, 1 - disc], size=reps)
                low, high = stats.tango_interval(counts[:, 0], counts[:, 1], n)
                covered = (low <= d + 1e-12) & (d - 1e-12 <= high)
                yield Rate(f"disagree {disc:.2f} diff {d:.2f} n {n}", float(covered.mean()), reps)


def accuracy_interval_coverage(sizes=(20, 100, 164, 1319), grid: int = 199) -> Iterator[Rate]:
    """Worst exact coverage of the printed 95% accuracy interval over true accuracies in
    (0, 1): computed from the binomial distribution, no simulation noise."""
    for n in sizes:
        k = np.arange(n + 1)
        intervals = [stats.mean_ci([1.0] * i + [0.0] * (n - i)) for i in k]
        low = np.array([e.low for e in intervals])
        high = np.array([e.high for e in intervals])
        worst = 1.0
        for p in np.linspace(0.005, 0.995, grid):
            pmf = sps.binom.pmf(k, n, p)
            worst = min(worst, float(pmf[(low <= p) & (p <= high)].sum()))
        yield Rate(f"n {n} (worst over accuracy)", worst, 10**9)


def _clustered_pair(
    rng, sizes: np.ndarray, shape: float, difference: float, effect: str | None = None
):
    """Paired 0/1 scores in clusters: each cluster has its own difficulty, both models see it.
    With `effect`, each cluster also moves the difference its own way (normal, SD 0.3, or
    two-peaked, +-0.6: a story one model reads far better than the other), symmetric about
    `difference`. Accuracies stay within [0, 1] without clipping, so the true difference is
    exactly `difference`."""
    ids = np.repeat(np.arange(len(sizes)), sizes)
    g = len(sizes)
    if effect is None:
        p = 0.1 + 0.8 * rng.beta(shape, shape, size=g)
        moved = np.zeros(g)
    else:
        p = 0.35 + 0.3 * rng.beta(shape, shape, size=g)
        moved = (
            rng.choice([-0.6, 0.6], size=g)
            if effect == "two-peaked"
            else np.clip(rng.normal(0.0, 0.3, size=g), -0.6, 0.6)
        )
    a = (rng.random(len(ids)) < np.clip(p + (difference + moved) / 2, 0, 1)[ids]).astype(float)
    b = (rng.random(len(ids)) < np.clip(p - (difference + moved) / 2, 0, 1)[ids]).astype(float)
    return a, b, [f"c{i}" for i in ids]


# (smallest cluster, largest cluster, difficulty shape, cluster effect on the difference)
CLUSTER_DESIGNS = {
    "4 items each": (4, 4, 1.0, None),
    "2-12 items": (2, 12, 0.5, None),
    "1-30 items": (1, 30, 2.0, None),
    "3-30 items, effects on the difference": (3, 30, 1.0, "normal"),
    "3-30 items, two-peaked effects": (3, 30, 1.0, "two-peaked"),
}


def clustered_difference_test(
    clusters=(3, 5, 10, 50), reps: int = 2000, seed: int = 2
) -> Iterator[tuple[Rate, Rate]]:
    """For paired 0/1 scores in G clusters with no true difference: the rate at which the
    difference test rejects (type I error), and the coverage of the printed 95% interval."""
    rng = np.random.default_rng(seed)
    for design, (low, high, shape, effect) in CLUSTER_DESIGNS.items():
        for g in clusters:
            rejected = covered = 0
            for _ in range(reps):
                sizes = rng.integers(low, high + 1, size=g)
                a, b, ids = _clustered_pair(rng, sizes, shape, 0.0, effect)
                tests = stats.paired_tests(a, b, 0.05, ids)
                rejected += tests.p_difference < ALPHA
                diff = tests.diff
                covered += (not diff.informative) or (diff.low <= 0 <= diff.high)
            setting = f"{design}, {g} clusters"
            yield Rate(setting, rejected / reps, reps), Rate(setting, covered / reps, reps)


def clustered_tost_size(
    clusters=(3, 5, 10, 50), margin: float = 0.05, reps: int = 1500, seed: int = 3
) -> Iterator[Rate]:
    """P(declare equivalent | true difference = margin) for clustered paired 0/1 scores."""
    rng = np.random.default_rng(seed)
    for design in ("2-12 items", "3-30 items, two-peaked effects"):
        low, high, shape, effect = CLUSTER_DESIGNS[design]
        for g in clusters:
            hits = 0
            for _ in range(reps):
                sizes = rng.integers(low, high + 1, size=g)
                a, b, ids = _clustered_pair(rng, sizes, shape, margin, effect)
                hits += stats.paired_tests(a, b, margin, ids).p_equivalence < ALPHA
            yield Rate(f"{design}, {g} clusters", hits / reps, reps)


def target_interval_coverage(
    sizes=(100, 300, 1319),
    target_n: int = 1319,
    accuracies=(0.5, 0.9, 0.941),
    reps: int = 600,
    seed: int = 4,
) -> Iterator[Rate]:
    """Coverage of the printed 95% interval of open - published when the published number is
    itself a measurement on `target_n` items (Miettinen-Nurminen score)."""
    rng = np.random.default_rng(seed)
    for acc in accuracies:
        for n in sizes:
            covered = 0
            for _ in range(reps):
                k = int(rng.binomial(n, acc))
                published = rng.binomial(target_n, acc) / target_n
                tests = stats.target_tests([1.0] * k + [0.0] * (n - k), published, 0.01, target_n)
                covered += tests.diff.low <= 0 <= tests.diff.high
            yield Rate(f"accuracy {acc} n {n} vs {target_n}", covered / reps, reps)


def target_difference_size(
    sizes=(20, 30, 50),
    target_ns=(100, 14042),
    accuracies=(0.3, 0.885, 0.95),
    reps: int = 2000,
    seed: int = 7,
) -> Iterator[Rate]:
    """P(difference claimed | the open model's accuracy equals the published one's) for 0/1
    scores on `n` items against a number measured on `target_n` items."""
    import warnings

    rng = np.random.default_rng(seed)
    for acc in accuracies:
        for n in sizes:
            for target_n in target_ns:
                claims = 0
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", RuntimeWarning)
                    for _ in range(reps):
                        k = int(rng.binomial(n, acc))
                        published = rng.binomial(target_n, acc) / target_n
                        scores = [1.0] * k + [0.0] * (n - k)
                        tests = stats.target_tests(scores, published, 0.02, target_n)
                        claims += tests.p_difference < ALPHA
                yield Rate(f"accuracy {acc} n {n} vs {target_n}", claims / reps, reps)


def movement_false_claims(
    settings=((20, 0.5, 0.2), (40, 0.5, 0.05), (40, 0.2, 0.2), (100, 0.5, 0.2)),
    tasks: int = 3,
    reps: int = 300,
    seed: int = 5,
) -> Iterator[Rate]:
    """P(the before/after report says "improved" or "regressed" on any of `tasks` tasks | training
    changed nothing), for each (items, accuracy, discordance) setting: base and trained disagree
    on `discordance` of the items, half each way, so both keep the accuracy. Runs the shipped
    path: paired comparisons, then Holm across the tasks."""
    from openparity.bench.comparison import RunScores, compare_scores
    from openparity.bench.movement import Movement, build_movements
    from openparity.bench.store import RunInfo

    def scores(model: str, values: np.ndarray) -> RunScores:
        run = RunInfo(model, model, "t", {}, [], "sim", False, "accuracy", 0.05)
        per_item = {f"q{i}": float(v) for i, v in enumerate(values)}
        return RunScores(run, per_item, dict.fromkeys(per_item), 0, 0)

    rng = np.random.default_rng(seed)
    kinds = np.array([[1, 0], [0, 1], [1, 1], [0, 0]], dtype=float)  # (base, trained)
    for n, acc, disc in settings:
        p = [disc / 2, disc / 2, acc - disc / 2, 1 - acc - disc / 2]
        claims = 0
        for _ in range(reps):
            movements = []
            for _ in range(tasks):
                pairs = kinds[rng.choice(4, size=n, p=p)]
                change = compare_scores(scores("trained", pairs[:, 1]), scores("base", pairs[:, 0]))
                movements.append(Movement(change, before=None))
            claims += any(
                m.verdict in ("improved", "regressed") for m in build_movements(movements)
            )
        yield Rate(f"n {n} accuracy {acc} discordance {disc}", claims / reps, reps)


# per-item differences of a continuous score (a per-token probability, partial credit) between
# two arms, mean 0 and SD 1 before scaling to score units; skewness names the third moment
LOGNORMAL_SD = math.sqrt((math.e - 1) * math.e)
CONTINUOUS_DESIGNS = {
    "normal": lambda rng, n: rng.normal(0.0, 1.0, n),
    "heavy tails (t, 3 df)": lambda rng, n: rng.standard_t(3, n) / math.sqrt(3),
    "skewness +0.5 (gamma)": lambda rng, n: (rng.gamma(16.0, 1.0, n) - 16.0) / 4.0,
    "skewness +1 (gamma)": lambda rng, n: (rng.gamma(4.0, 1.0, n) - 4.0) / 2.0,
    "skewness -1 (gamma)": lambda rng, n: (4.0 - rng.gamma(4.0, 1.0, n)) / 2.0,
    "skewness +2 (gamma)": lambda rng, n: rng.gamma(1.0, 1.0, n) - 1.0,
    "skewness -2 (gamma)": lambda rng, n: 1.0 - rng.gamma(1.0, 1.0, n),
    "lognormal (skewness +6)": lambda rng, n: (
        (np.exp(rng.normal(0.0, 1.0, n)) - math.exp(0.5)) / LOGNORMAL_SD
    ),
    "lognormal (skewness -6)": lambda rng, n: (
        (math.exp(0.5) - np.exp(rng.normal(0.0, 1.0, n))) / LOGNORMAL_SD
    ),
}


def continuous_difference_claims(
    sizes=(20, 40, 80, 160), reps: int = 2000, seed: int = 6
) -> Iterator[tuple[Rate, Rate]]:
    """Paired continuous scores of independent items with no true difference (both arms share
    each item's difficulty, 0.5 here: only the differences matter): the rate at which the
    interval's lower end is above 0, the false "beats" claim `federated compare` and `gap`
    make from it, and the coverage of the intervals printed (a sample too skewed for its n
    prints none and claims nothing)."""
    rng = np.random.default_rng(seed)
    for design, draw in CONTINUOUS_DESIGNS.items():
        for n in sizes:
            above = covered = printed = 0
            for _ in range(reps):
                diff = 0.01 * draw(rng, n)  # |diff| / 2 < 0.5: the scores stay in [0, 1]
                tests = stats.paired_tests(0.5 + diff / 2, 0.5 - diff / 2, 0.01)
                above += tests.diff.low > 0
                if tests.diff.informative:
                    printed += 1
                    covered += tests.diff.low <= 0 <= tests.diff.high
            setting = f"{design}, n {n}"
            yield (
                Rate(setting, above / reps, reps),
                Rate(setting, covered / max(printed, 1), printed),
            )
