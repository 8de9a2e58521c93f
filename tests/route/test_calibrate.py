"""Calibration: on a real run of the embedded model (through the CLI), and the guarantee itself
checked by simulation on synthetic runs in a real run store."""

from __future__ import annotations

import json

import numpy as np
import pytest
from statsmodels.stats.proportion import proportion_confint

from openparity.bench.store import Record, RunInfo, RunStore
from openparity.route.calibrate import calibrate_run, clopper_pearson_upper
from openparity.route.config import GatewayConfig, load_gateway_config
from tests.cli import openparity

GATEWAY = """\
tiers:
  - model: local:smollm2-135m
    checks: [non_empty, refusal, {type: mean_logprob, min: -5}]
  - model: openai:gpt-4o
"""


def test_clopper_pearson_matches_statsmodels():
    for k, n in [(0, 50), (3, 50), (20, 40)]:
        _, upper = proportion_confint(k, n, alpha=0.1, method="beta")  # two-sided 90 %
        assert clopper_pearson_upper(k, n, 0.05) == pytest.approx(upper)
    assert clopper_pearson_upper(0, 0, 0.05) == 1.0


@pytest.mark.slow
def test_calibrate_a_real_run_and_rewrite_the_config(tmp_path):
    store = tmp_path / "runs.sqlite"
    ran = openparity(
        "bench",
        "run",
        "local:smollm2-135m",
        "mmlu",
        "--limit",
        "40",
        "--max-tokens",
        "4",
        "--logprobs",
        "--store",
        str(store),
        "--json",
    )
    assert ran.returncode == 0, ran.stderr
    run_id = json.loads(ran.stdout)["run_id"]
    config = tmp_path / "gateway.yaml"
    config.write_text(GATEWAY, encoding="utf-8")
    calibrated = openparity(
        "route",
        "calibrate",
        "--run",
        run_id,
        "-c",
        str(config),
        "--store",
        str(store),
        "--epsilon",
        "0.15",
        "--delta",
        "0.1",
        "--json",
    )
    assert calibrated.returncode == 0, calibrated.stderr
    result = json.loads(calibrated.stdout)
    assert result["items"] == 40
    if not result["feasible"]:  # a 135M model may be too weak for any guarantee: say so
        assert load_gateway_config(config).calibration is None
        return
    assert result["upper_bound"] <= 0.15
    assert result["accepted_wrong"] / 40 <= result["upper_bound"]
    written = load_gateway_config(config)
    threshold = written.tiers[0].checks[2].min
    assert threshold == pytest.approx(result["thresholds"]["mean_logprob"])
    assert written.calibration.run_id == run_id
    assert "mmlu items of run" in written.calibration.guarantee
    assert written.calibration.settings["max_tokens"] == 4
    assert written.calibration.open_share == pytest.approx(result["open_share"], abs=1e-6)
    with RunStore(store) as runs:  # the written threshold accepts what calibration counted
        records = [r for r in runs.records(run_id) if r.ok]
    accepted = sum((r.mean_logprob or -np.inf) >= threshold for r in records)
    assert accepted >= result["accepted"]


def synthetic_run(store: RunStore, rng: np.random.Generator, n: int, run_id: str) -> None:
    """An open model whose confidence (mean logprob) predicts correctness, noisily."""
    store.create_run(
        RunInfo(run_id, "local:smollm2-135m", "synthetic", {}, [], "synthetic", False, "acc", 0)
    )
    confidence = rng.normal(-1.0, 0.6, n)
    p_right = 1 / (1 + np.exp(-(3 * confidence + 3.5)))
    right = rng.random(n) < p_right
    for i in range(n):
        store.put(
            Record(
                run_id,
                f"q{i}",
                0,
                "h",
                response="x",
                score=float(right[i]),
                finish_reason="stop",
                mean_logprob=float(confidence[i]),
            )
        )


def test_the_guarantee_holds_on_fresh_data(tmp_path):
    """Calibrate on 400 items, then measure the accepted-but-wrong rate on 20,000 fresh ones:
    it must exceed epsilon in at most about delta of the repetitions."""
    config = GatewayConfig.model_validate(
        {"tiers": [{"model": "local:smollm2-135m", "checks": [{"type": "mean_logprob"}]}]}
    )
    rng = np.random.default_rng(7)
    epsilon, delta, repetitions = 0.05, 0.1, 40
    violations, shares = 0, []
    with RunStore(tmp_path / "runs.sqlite") as store:
        for rep in range(repetitions):
            synthetic_run(store, rng, 400, f"cal{rep}")
            result = calibrate_run(store, f"cal{rep}", config, epsilon=epsilon, delta=delta)
            assert result.feasible
            shares.append(result.open_share)
            fresh = rng.normal(-1.0, 0.6, 20_000)
            right = rng.random(20_000) < 1 / (1 + np.exp(-(3 * fresh + 3.5)))
            accepted = fresh >= result.thresholds["mean_logprob"]
            violations += (accepted & ~right).mean() > epsilon
    assert violations / repetitions <= delta + 0.1  # binomial slack for 40 repetitions
    assert np.mean(shares) > 0.2  # and it is not vacuous: the open tier still serves traffic


def correlated_run(store, rng, items: int, samples: int, run_id: str):
    """Each item has its own difficulty; its samples share it, their confidence and mostly
    their correctness (a sample differs from its item with probability 0.05)."""
    store.create_run(
        RunInfo(
            run_id,
            "local:smollm2-135m",
            "synthetic",
            {"samples": samples},
            [],
            "synthetic",
            False,
            "acc",
            0,
        )
    )
    item_confidence = rng.normal(-1.0, 0.6, items)
    p_right = 1 / (1 + np.exp(-(3 * item_confidence + 3.5)))
    item_right = rng.random(items) < p_right
    records = []
    for i in range(items):
        for s in range(samples):
            confidence = item_confidence[i] + rng.normal(0, 0.1)
            right = item_right[i] != (rng.random() < 0.05)
            records.append((i, s, confidence, right))
            store.put(
                Record(
                    run_id,
                    f"q{i}",
                    s,
                    "h",
                    response="x",
                    score=float(right),
                    finish_reason="stop",
                    mean_logprob=float(confidence),
                )
            )
    return records


def true_risk(rng, threshold: float) -> float:
    """P(accepted and wrong) for a fresh request: a fresh item, one fresh sample of it."""
    confidence = rng.normal(-1.0, 0.6, 40_000)
    right = rng.random(40_000) < 1 / (1 + np.exp(-(3 * confidence + 3.5)))
    right ^= rng.random(40_000) < 0.05
    accepted = confidence + rng.normal(0, 0.1, 40_000) >= threshold
    return float((accepted & ~right).mean())


@pytest.mark.parametrize("samples", [5, 10])
@pytest.mark.slow
def test_the_guarantee_holds_per_item_when_samples_are_correlated(tmp_path, samples):
    from openparity.route.calibrate import select_thresholds

    config = GatewayConfig.model_validate(
        {"tiers": [{"model": "local:smollm2-135m", "checks": [{"type": "mean_logprob"}]}]}
    )
    rng = np.random.default_rng(samples)
    epsilon, delta, repetitions = 0.05, 0.1, 60
    violations = naive_violations = 0
    with RunStore(tmp_path / "runs.sqlite") as store:
        for rep in range(repetitions):
            records = correlated_run(store, rng, 150, samples, f"cal{samples}-{rep}")
            result = calibrate_run(
                store, f"cal{samples}-{rep}", config, epsilon=epsilon, delta=delta
            )
            assert result.items == 150 and "one answer per item" in " ".join(result.notes)
            if result.feasible:
                violations += true_risk(rng, result.thresholds["mean_logprob"]) > epsilon
            # what calibrating on every stored answer would have promised
            confidence = np.array([r[2] for r in records])
            wrong = np.array([not r[3] for r in records])
            _, naive = select_thresholds(
                {"mean_logprob": confidence}, np.ones(len(wrong), bool), wrong, epsilon, delta
            )
            if naive is not None:
                naive_violations += true_risk(rng, naive.thresholds["mean_logprob"]) > epsilon
    slack = 3 * (delta * (1 - delta) / repetitions) ** 0.5
    assert violations / repetitions <= delta + slack
    assert naive_violations / repetitions > delta + slack  # the check can fail: this would
