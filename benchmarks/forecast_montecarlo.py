"""`openparity forecast` as users run it: the whole command in a fresh process (start-up,
imports, 10^6 draws, tornado, Sobol, the terminal report), repeated, against its floor in the
same run (the same process doing nothing but its imports) and against a plain-Python loop over
draws (timed on fewer draws and scaled: the same work per draw). Target: under 1 s.

    python benchmarks/forecast_montecarlo.py [--draws 1000000] [--repeats 5] [--loop-draws 20000]
"""

from __future__ import annotations

import argparse
import math
import random
import statistics
import subprocess
import sys
import time

from scipy import special

from openparity.forecast.cli import DEFAULT_SCENARIO
from openparity.forecast.scenario import load_scenario

IMPORTS = (
    "import openparity.cli, openparity.forecast.montecarlo, openparity.forecast.report,"
    " openparity.forecast.scenario"
)


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


def timed(command: list[str], repeats: int) -> list[float]:
    seconds = []
    for _ in range(repeats):
        started = time.perf_counter()
        subprocess.run(command, check=True, capture_output=True)
        seconds.append(time.perf_counter() - started)
    return seconds


def spread(seconds: list[float]) -> str:
    return f"{statistics.median(seconds):5.2f} s ({min(seconds):.2f}-{max(seconds):.2f})"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--draws", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--loop-draws", type=int, default=20_000)
    args = parser.parse_args()
    default = [sys.executable, "-m", "openparity.cli", "forecast"]
    command = [*default, "--draws", str(args.draws)]
    subprocess.run(command, check=True, capture_output=True)  # warm the file cache
    as_default = timed(default, args.repeats)
    whole = timed(command, args.repeats)
    imports = timed([sys.executable, "-c", IMPORTS], args.repeats)

    scenario = load_scenario(DEFAULT_SCENARIO)
    started = time.perf_counter()
    loop_estimate = plain_loop(scenario, args.loop_draws, seed=1)
    loop = (time.perf_counter() - started) * args.draws / args.loop_draws

    command_s, imports_s = statistics.median(whole), statistics.median(imports)
    print(f"seed scenario, {len(scenario.factors)} factors, {args.draws:,} draws, sensitivity on")
    print(f"median (min-max) of {args.repeats} runs, each a fresh process")
    print(f"the default command : {spread(as_default)}   its own draws, 200,000")
    print(f"openparity forecast : {spread(whole)}   target < 1 s: x{command_s:.2f} of it")
    print(f"its imports alone   : {spread(imports)}   (the floor of any run)")
    print(f"computing and report: {command_s - imports_s:5.2f} s")
    print(f"plain Python loop   : {loop:5.0f} s   scaled from {args.loop_draws:,} draws")
    speedup = loop / command_s
    print(f"                      (P = {loop_estimate:.3f}): the command is x{speedup:.0f} faster")


if __name__ == "__main__":
    main()
