"""Monte Carlo speed: 10^6 draws of the seed's 10-factor scenario, vectorised, against a
plain-Python loop over draws (timed on fewer draws and scaled: it is the same work per draw).
Target: under 2 s for 10^6 draws on 2 cores.

    python benchmarks/forecast_montecarlo.py [--draws 1000000] [--loop-draws 20000]
"""

from __future__ import annotations

import argparse
import math
import random
import time

from scipy import special

from openparity.forecast.cli import DEFAULT_SCENARIO
from openparity.forecast.montecarlo import forecast
from openparity.forecast.scenario import load_scenario


def plain_loop(scenario, draws: int, seed: int) -> float:
    """The same model one draw at a time: per-draw correlated normals, marginal ppf, link."""
    import numpy as np

    rng = random.Random(seed)
    values, vectors = np.linalg.eigh(scenario.correlation)
    root = (vectors * np.sqrt(np.clip(values, 0, None))).tolist()
    d = len(scenario.factors)
    link = scenario.link
    total = 0.0
    for _ in range(draws):
        z = [rng.gauss(0, 1) for _ in range(d)]
        score = 0.0
        for i, factor in enumerate(scenario.factors):
            latent = sum(root[i][j] * z[j] for j in range(d))
            push = float(factor.push.ppf(special.ndtr(latent)))
            resistance = float(factor.resistance.ppf(rng.random()))
            score += factor.weight * (push - resistance)
        total += 0.5 * math.erfc(-((score - link.threshold) / link.noise_sd) / math.sqrt(2))
    return total / draws


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--draws", type=int, default=1_000_000)
    parser.add_argument("--loop-draws", type=int, default=20_000)
    args = parser.parse_args()
    scenario = load_scenario(DEFAULT_SCENARIO)

    forecast(scenario, draws=10_000, sensitivity=False)  # warm imports
    started = time.perf_counter()
    result = forecast(scenario, draws=args.draws, seed=1, sensitivity=False)
    vectorised = time.perf_counter() - started

    started = time.perf_counter()
    loop_estimate = plain_loop(scenario, args.loop_draws, seed=1)
    loop = (time.perf_counter() - started) * args.draws / args.loop_draws

    print(f"seed scenario: {len(scenario.factors)} factors, {args.draws:,} draws")
    print(
        f"vectorised         : {vectorised:7.2f} s   P = {result.probability:.4f}"
        f" +- {result.standard_error:.4f}"
    )
    print(
        f"plain Python loop  : {loop:7.1f} s   (timed on {args.loop_draws:,} draws, scaled;"
        f" P = {loop_estimate:.3f})"
    )
    print(f"speed-up            : {loop / vectorised:7.0f}x   (target: vectorised under 2 s)")


if __name__ == "__main__":
    main()
