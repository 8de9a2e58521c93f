"""Monte Carlo forecast of a scenario: correlated factors through a Gaussian copula, the
probability of parity with its standard error, convergence, a tornado and Sobol indices.

Everything is vectorised over draws (numpy arrays, no per-draw Python)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Literal

import numpy as np
from scipy import special, stats
from scipy.stats import qmc

from openparity.cpus import cpu_threads
from openparity.forecast import marginals
from openparity.forecast.scenario import Scenario, ScenarioError

Sampling = Literal["mc", "lhs", "sobol"]
_EPS = 1e-12


@dataclass(frozen=True)
class TornadoBar:
    factor: str
    low: float  # probability with the factor against parity: push at p10, resistance at p90
    high: float  # ... and for parity: push at p90, resistance at p10

    @property
    def swing(self) -> float:
        return abs(self.high - self.low)


@dataclass(frozen=True)
class SobolIndex:
    input: str
    first_order: float
    total: float


@dataclass(frozen=True)
class Forecast:
    scenario: str
    horizon: str | None
    probability: float
    standard_error: float
    draws: int
    sampling: str
    seed: int
    convergence: list[tuple[int, float, float]]  # (draws so far, estimate, standard error)
    tornado: list[TornadoBar]
    sobol: list[SobolIndex]
    correlated: bool

    @property
    def ci95(self) -> tuple[float, float]:
        half = 1.959964 * self.standard_error
        return max(0.0, self.probability - half), min(1.0, self.probability + half)


def uniforms(n: int, dims: int, sampling: Sampling, seed: int) -> np.ndarray:
    """(n x dims) points in the unit cube: random, Latin hypercube or scrambled Sobol."""
    if sampling == "mc":
        return np.random.default_rng(seed).random((n, dims))
    if sampling == "lhs":
        return qmc.LatinHypercube(d=dims, seed=seed).random(n)
    if sampling == "sobol":
        return qmc.Sobol(d=dims, scramble=True, seed=seed).random(n)
    raise ScenarioError(f"unknown sampling {sampling!r}", hint="use mc, lhs or sobol")


def correlate(z: np.ndarray, correlation: np.ndarray) -> np.ndarray:
    """Independent standard normals (n x d) -> normals with this correlation (Gaussian copula)."""
    values, vectors = np.linalg.eigh(correlation)
    root = vectors * np.sqrt(np.clip(values, 0, None))  # root @ root.T == correlation
    return z @ root.T


def inputs(
    scenario: Scenario, n: int, sampling: Sampling, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Pushes and resistances (n x d). Pushes go through the copula (correlated latent normals,
    then each marginal's inverse CDF); resistances are independent. With plain Monte Carlo the
    resistances are drawn directly; stratified schemes push every input through its inverse."""
    d = len(scenario.factors)

    def push_column(i: int) -> np.ndarray:
        return marginals.copula_ppf(scenario.factors[i].push, latent[:, i])

    # numpy's generators and scipy's special functions release the GIL: the resistances are
    # drawn (in their fixed order) while the pushes' inverse CDFs run, column by column
    with ThreadPoolExecutor(max_workers=cpu_threads()) as pool:
        if sampling == "mc":
            rng = np.random.default_rng(seed)
            latent = correlate(rng.standard_normal((n, d)), scenario.correlation)
            resistances = pool.submit(
                lambda: [marginals.draw(f.resistance, n, rng) for f in scenario.factors]
            )
        else:
            u = uniforms(n, 2 * d, sampling, seed)
            latent = correlate(
                special.ndtri(np.clip(u[:, :d], _EPS, 1 - _EPS)), scenario.correlation
            )
            columns = [(f.resistance, u[:, d + i]) for i, f in enumerate(scenario.factors)]
            resistances = pool.submit(lambda: [marginals.ppf(r, q) for r, q in columns])
        push = np.column_stack(list(pool.map(push_column, range(d))))
        resist = np.column_stack(resistances.result())
    return push, resist


def parity_score(scenario: Scenario, push: np.ndarray, resist: np.ndarray) -> np.ndarray:
    """Each draw's weighted net push, the quantity the link turns into a probability."""
    weights = np.array([f.weight for f in scenario.factors])
    return (push - resist) @ weights


def link_probability(scenario: Scenario, score: np.ndarray) -> np.ndarray:
    """Each draw's probability of parity from its score. For the threshold link with noise this
    is the exact conditional probability Phi((s - t) / sd) (same mean as sampling the noise,
    less variance)."""
    link = scenario.link
    if link.kind == "logistic":
        return special.expit(link.intercept + link.scale * score)
    if link.noise_sd > 0:
        return special.ndtr((score - link.threshold) / link.noise_sd)
    return (score > link.threshold).astype(float)


def parity_probability(scenario: Scenario, push: np.ndarray, resist: np.ndarray) -> np.ndarray:
    """Each draw's probability of parity."""
    return link_probability(scenario, parity_score(scenario, push, resist))


def forecast(
    scenario: Scenario,
    *,
    draws: int = 200_000,
    seed: int = 0,
    sampling: Sampling = "mc",
    sensitivity: bool = True,
) -> Forecast:
    """The probability of parity by the scenario's horizon, with its Monte Carlo error."""
    if draws < 100:
        raise ScenarioError(f"{draws} draws are too few", hint="use at least 100")
    push, resist = inputs(scenario, draws, sampling, seed)
    score = parity_score(scenario, push, resist)
    values = link_probability(scenario, score)
    tornado = _tornado(scenario, push, resist, score) if sensitivity else []
    sobol = _sobol(scenario, seed) if sensitivity else []
    correlated = bool(np.any(scenario.correlation != np.eye(len(scenario.factors))))
    return Forecast(
        scenario=scenario.name,
        horizon=scenario.horizon,
        probability=float(values.mean()),
        standard_error=float(values.std(ddof=1) / np.sqrt(draws)),
        draws=draws,
        sampling=sampling,
        seed=seed,
        convergence=_convergence(values),
        tornado=tornado,
        sobol=sobol,
        correlated=correlated,
    )


def _convergence(values: np.ndarray, points: int = 40) -> list[tuple[int, float, float]]:
    n = len(values)
    sizes = np.unique(np.geomspace(min(100, n), n, points).astype(int))
    cumulative = np.cumsum(values)
    cumulative_sq = np.cumsum(values**2)
    out = []
    for k in sizes:
        mean = cumulative[k - 1] / k
        variance = max(cumulative_sq[k - 1] / k - mean**2, 0.0) * k / max(k - 1, 1)
        out.append((int(k), float(mean), float(np.sqrt(variance / k))))
    return out


def _tornado(
    scenario: Scenario, push: np.ndarray, resist: np.ndarray, score: np.ndarray
) -> list[TornadoBar]:
    """Each factor pinned against parity (push p10, resistance p90) and for it (p90, p10), the
    other draws unchanged (common random numbers, so the swing is not noise). Pinning factor i
    moves each draw's score by its weight times the change of that factor's net push, so no
    draw matrix is copied."""

    def quantile(dist: object, q: float) -> float:
        return float(np.asarray(dist.ppf(np.array([q])))[0])  # type: ignore[attr-defined]

    def bar(factor_index: int) -> TornadoBar:
        factor = scenario.factors[factor_index]
        net = push[:, factor_index] - resist[:, factor_index]
        ends = []
        for q in (0.1, 0.9):
            pinned_net = quantile(factor.push, q) - quantile(factor.resistance, 1 - q)
            moved = score + factor.weight * (pinned_net - net)
            ends.append(float(link_probability(scenario, moved).mean()))
        return TornadoBar(factor.name, ends[0], ends[1])

    # numpy's element-wise work releases the GIL: the factors' bars are computed in parallel
    with ThreadPoolExecutor(max_workers=cpu_threads()) as pool:
        bars = list(pool.map(bar, range(len(scenario.factors))))
    return sorted(bars, key=lambda b: b.swing, reverse=True)


def _sobol(scenario: Scenario, seed: int, n: int = 2**12) -> list[SobolIndex]:
    """Sobol first-order and total indices of every non-constant input (inputs treated as
    independent: Sobol indices are not defined for correlated inputs)."""
    from openparity.forecast.scenario import Constant

    columns = []  # (label, factor index, "push" | "resistance", distribution)
    for i, f in enumerate(scenario.factors):
        for role, dist in (("push", f.push), ("resistance", f.resistance)):
            if not isinstance(dist, Constant):
                columns.append((f"{f.name}:{role}", i, role, dist))
    if not columns:
        return []
    base_push = np.array([[f.push.mean() for f in scenario.factors]])
    base_resist = np.array([[f.resistance.mean() for f in scenario.factors]])

    def model(x: np.ndarray) -> np.ndarray:  # x: (inputs, n)
        push = np.repeat(base_push, x.shape[1], axis=0)
        resist = np.repeat(base_resist, x.shape[1], axis=0)
        for row, (_, i, role, _) in enumerate(columns):
            (push if role == "push" else resist)[:, i] = x[row]
        return parity_probability(scenario, push, resist)

    result = stats.sobol_indices(
        func=model, n=n, dists=[c[3] for c in columns], rng=np.random.default_rng(seed)
    )
    return [
        SobolIndex(label, float(first), float(total))
        for (label, *_), first, total in zip(
            columns, result.first_order, result.total_order, strict=True
        )
    ]
