"""The error rates behind openparity's verdicts, by seeded simulation on the shipped functions
(the same simulations the test suite asserts on, printed as tables, optionally with more
replicates). Targets: equivalence and difference tests reject a true null at most 5 % of the
time (plus Monte Carlo slack); printed 95 % intervals cover at least 94 %.

    python benchmarks/stats_error_rates.py [--scale 1]
"""

from __future__ import annotations

import argparse

from openparity.testing import stats_simulation as sim


def show(title: str, rates, target: str) -> None:
    print(f"\n{title}  ({target})")
    for r in rates:
        se = "exact" if r.reps >= 10**9 else f"± {r.mc_se:.3f}"
        print(f"  {r.setting:45s} {r.rate:6.3f} {se}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--scale", type=float, default=1.0, help="Multiply every reps count.")
    scale = parser.parse_args().scale

    def reps(n: int) -> int:
        return max(100, int(n * scale))

    show(
        "Paired 0/1 TOST (Tango score): P(equivalent | true difference = margin)",
        sim.tost_size_paired_binary(reps=reps(10_000)),
        "<= 0.05",
    )
    show(
        "Paired 0/1 interval (Tango score): coverage",
        sim.interval_coverage_paired_binary(reps=reps(4000)),
        ">= 0.94",
    )
    show(
        "Accuracy interval (Clopper-Pearson): coverage", sim.accuracy_interval_coverage(), ">= 0.95"
    )
    rows = list(sim.clustered_difference_test(reps=reps(2000)))
    show(
        "Clustered difference test (CR2, Bell-McCaffrey t): type I error",
        [r for r, _ in rows],
        "<= 0.05",
    )
    show("Clustered difference interval: coverage", [c for _, c in rows], ">= 0.94")
    rows = list(sim.continuous_difference_claims(reps=reps(2000)))
    show(
        "Paired continuous scores (t, Hall's skewness correction): P(lower end > 0 | no"
        " difference)",
        [r for r, _ in rows],
        "<= 0.05",
    )
    show(
        "Paired continuous scores: coverage of the intervals printed",
        [c for _, c in rows],
        ">= 0.91 up to skewness 2",
    )
    show(
        "Clustered TOST: P(equivalent | true difference = margin 0.05)",
        sim.clustered_tost_size(reps=reps(1500)),
        "<= 0.05",
    )
    show(
        "Open vs a published number measured on 1319 items: interval coverage",
        sim.target_interval_coverage(reps=reps(600)),
        ">= 0.94",
    )


if __name__ == "__main__":
    main()
