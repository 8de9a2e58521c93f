"""The same ServerApp and ClientApp in Flower's simulation engine and in a deployment of
separate processes on loopback: same global adapter, a member killed mid-run survived, a
restarted coordinator continuing from its last saved round."""

from __future__ import annotations

import json
import time

import pytest

from tests.cli import openparity
from tests.federated.conftest import write_heldout_task
from tests.federated.deployment import crash_member, deployment, write_certificates

# Three members on a tiny Llama with SmolLM2's tokenizer: the mechanics in seconds per round.
TRAINING = [
    "--local-steps",
    "2",
    "--batch-size",
    "4",
    "--lora-r",
    "4",
    "--decontaminate",
    "",
    "--seed",
    "7",
]
TOLERANCE = 1e-5  # max |difference| of any adapter value between two runtimes or runs
SECURE = ["--secure", "--secure-max-weight", "100"]  # members hold about 18 records each
SECURE_TOLERANCE = 5e-4  # two rounds of SecAgg+'s quantisation, trained on (measured 1.2e-4)


def adapter(run_dir):
    from safetensors.torch import load_file

    return load_file(str(run_dir / "final" / "adapter_model.safetensors"))


def max_difference(a, b) -> float:
    assert a.keys() == b.keys()
    return max(float((a[k] - b[k]).abs().max()) for k in a)


def history(run_dir) -> list[dict]:
    return json.loads((run_dir / "history.json").read_text())


@pytest.fixture(scope="module")
def simulated(alliance_data, tiny_base, tmp_path_factory):
    """Two rounds of FedAvg over three members split by topic, in the simulation engine, the
    global model scored on a held-out task after each round."""
    out = tmp_path_factory.mktemp("simulated") / "run"
    task = write_heldout_task(out.parent, 5)
    result = openparity(
        "federated",
        "simulate",
        "--data",
        str(alliance_data),
        "--members",
        "3",
        "--split",
        "topic",
        "--base",
        str(tiny_base),
        "-o",
        str(out),
        "--rounds",
        "2",
        "--min-members",
        "3",
        *TRAINING,
        "--eval-task",
        str(task),
        "--json",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return out, json.loads(result.stdout)


@pytest.mark.slow
def test_a_simulation_trains_every_member_and_saves_each_round(simulated, tiny_base):
    out, report = simulated
    rounds = report["rounds"]
    assert [r["round"] for r in rounds] == [0, 1, 2]
    for entry in rounds:  # the base, then the global model after each round
        score = entry["global"]
        assert score["n"] == 5 and score["low"] <= score["score"] <= score["high"]
    for entry in rounds[1:]:
        assert entry["train"]["members"] == 3 and entry["failed"] == []
        assert entry["validation"]["members"] == 3
        assert entry["adapter_bytes"] > 0
    weights = adapter(out)
    assert any(float(t.abs().max()) > 0 for k, t in weights.items() if "lora_B" in k)  # moved
    config = json.loads((out / "final" / "adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == str(tiny_base)  # `hf:final` finds its base
    members = sorted((out / "members").glob("member-*.jsonl"))
    topics = [
        {json.loads(line)["topic"] for line in m.read_text("utf-8").splitlines()} for m in members
    ]
    assert sorted(len(t) for t in topics) == [1, 1, 1]  # non-IID: one topic per member


def test_the_global_adapter_opens_as_a_model_spec(simulated):
    from openparity.models.hf_backend import load_hf_model

    out, _ = simulated
    model, tokenizer = load_hf_model(str(out / "final"))
    assert model.config.num_hidden_layers == 2 and tokenizer is not None


@pytest.mark.slow
def test_a_deployment_reaches_the_simulations_adapter(simulated, tiny_base, tmp_path):
    out, _ = simulated
    members = sorted((out / "members").glob("member-*.jsonl"))
    args = ["--base", str(tiny_base), "--rounds", "2", "--min-members", "3", *TRAINING]
    with deployment(tmp_path, members, args) as (coordinator, _):
        assert coordinator.wait(timeout=900) == 0, (tmp_path / "serve.log").read_text()[-3000:]
    deployed = tmp_path / "run"
    assert [r["train"]["members"] for r in history(deployed)[1:]] == [3, 3]
    assert max_difference(adapter(out), adapter(deployed)) <= TOLERANCE


@pytest.fixture(scope="module")
def secured(simulated, tiny_base, tmp_path_factory):
    """The simulated run again, under secure aggregation."""
    out, _ = simulated
    members = sorted((out / "members").glob("member-*.jsonl"))
    data = [arg for m in members for arg in ("--data", str(m))]
    secure_out = tmp_path_factory.mktemp("secured") / "run"
    result = openparity(
        "federated",
        "simulate",
        *data,
        "--base",
        str(tiny_base),
        "-o",
        str(secure_out),
        "--rounds",
        "2",
        "--min-members",
        "3",
        *TRAINING,
        *SECURE,
        "--json",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return secure_out, json.loads(result.stdout)


@pytest.mark.slow
def test_secure_aggregation_reaches_the_plain_adapter_within_its_quantisation(simulated, secured):
    (out, _), (secure_out, report) = simulated, secured
    assert [r["train"]["members"] for r in report["rounds"][1:]] == [3, 3]
    assert all(r["secure_upload_bytes"] > 3 * r["adapter_bytes"] for r in report["rounds"][1:])
    table = openparity("federated", "report", str(secure_out))
    assert table.returncode == 0 and " up" in table.stdout, table.stdout  # what members send
    plain, secure = adapter(out), adapter(secure_out)
    # SecAgg+ rounds each value stochastically: close to the plain average, never equal to it
    assert 0 < max_difference(plain, secure) <= SECURE_TOLERANCE
    lora_b = [k for k in plain if "lora_B" in k]  # zero at the start: all of it was trained
    error = max(float((plain[k] - secure[k]).abs().max()) for k in lora_b)
    assert error <= 0.1 * max(float(plain[k].abs().max()) for k in lora_b)


@pytest.mark.slow
def test_secure_aggregation_in_a_deployment_equals_the_simulation(
    simulated, secured, tiny_base, tmp_path
):
    (out, _), (secure_out, _) = simulated, secured
    members = sorted((out / "members").glob("member-*.jsonl"))
    args = ["--base", str(tiny_base), "--rounds", "2", "--min-members", "3", *TRAINING, *SECURE]
    with deployment(tmp_path, members, args) as (coordinator, _):
        assert coordinator.wait(timeout=900) == 0, (tmp_path / "serve.log").read_text()[-3000:]
    assert [r["train"]["members"] for r in history(tmp_path / "run")[1:]] == [3, 3]
    # members seed their stochastic rounding like their training: the same masked round
    assert max_difference(adapter(secure_out), adapter(tmp_path / "run")) <= TOLERANCE


@pytest.mark.slow
def test_dp_and_secure_aggregation_combine(simulated, secured, tiny_base, tmp_path):
    (out, _), (secure_out, _) = simulated, secured
    members = sorted((out / "members").glob("member-*.jsonl"))
    data = [arg for m in members for arg in ("--data", str(m))]
    result = openparity(
        "federated",
        "simulate",
        *data,
        "--base",
        str(tiny_base),
        "-o",
        str(tmp_path / "run"),
        "--rounds",
        "2",
        "--min-members",
        "3",
        *TRAINING,
        *SECURE,
        "--dp-noise",
        "0.8",
        "--dp-clip",
        "0.05",
        "--json",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    rounds = json.loads(result.stdout)["rounds"]
    assert [r["train"]["members"] for r in rounds[1:]] == [3, 3]
    assert 0 < rounds[1]["privacy"]["epsilon"] < rounds[2]["privacy"]["epsilon"]
    # members clipped before masking, the coordinator noised the unmasked average
    assert max_difference(adapter(secure_out), adapter(tmp_path / "run")) > 1e-3


@pytest.mark.slow
def test_a_deployment_over_tls(simulated, tiny_base, tmp_path):
    out, _ = simulated
    members = sorted((out / "members").glob("member-*.jsonl"))[:2]
    ca, cert, key = write_certificates(tmp_path)
    tls = ["--ssl-certfile", str(cert), "--ssl-keyfile", str(key), "--ssl-ca-certfile", str(ca)]
    args = ["--base", str(tiny_base), "--rounds", "1", "--min-members", "2", *TRAINING, *tls]
    with deployment(tmp_path, members, args, ("--root-certificates", str(ca))) as (coordinator, _):
        assert coordinator.wait(timeout=900) == 0, (tmp_path / "serve.log").read_text()[-3000:]
    assert [r["train"]["members"] for r in history(tmp_path / "run")[1:]] == [2]


@pytest.mark.slow
def test_a_member_killed_mid_run_neither_stalls_nor_corrupts_it(simulated, tiny_base, tmp_path):
    out, _ = simulated
    members = sorted((out / "members").glob("member-*.jsonl"))
    args = [
        "--base",
        str(tiny_base),
        "--rounds",
        "3",
        "--min-members",
        "2",
        "--round-timeout",
        "120",
        *TRAINING,
    ]
    with deployment(tmp_path, members, args) as (coordinator, joins):
        first = tmp_path / "run" / "rounds" / "0001" / "round.json"
        deadline = time.monotonic() + 600
        while not first.exists():
            assert coordinator.poll() is None, (tmp_path / "serve.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "round 1 never finished"
            time.sleep(0.5)
        crash_member(joins[2], members[2])
        assert coordinator.wait(timeout=900) == 0, (tmp_path / "serve.log").read_text()[-3000:]
    rounds = history(tmp_path / "run")
    assert [r["round"] for r in rounds] == [0, 1, 2, 3]
    assert rounds[1]["train"]["members"] == 3
    assert all(r["train"]["members"] == 2 for r in rounds[2:])  # the rest went on without it
    weights = adapter(tmp_path / "run")
    assert all(bool(t.isfinite().all()) for t in weights.values())


@pytest.mark.slow
def test_a_restarted_coordinator_continues_from_its_last_saved_round(
    simulated, alliance_data, tiny_base, tmp_path
):
    out, _ = simulated
    members = sorted((out / "members").glob("member-*.jsonl"))
    data = [arg for m in members for arg in ("--data", str(m))]
    common = [
        "--base",
        str(tiny_base),
        "-o",
        str(tmp_path / "run"),
        "--min-members",
        "3",
        *TRAINING,
    ]
    first = openparity("federated", "simulate", *data, *common, "--rounds", "1")
    assert first.returncode == 0, first.stderr[-3000:]
    second = openparity("federated", "simulate", *data, *common, "--rounds", "2")
    assert second.returncode == 0, second.stderr[-3000:]
    assert "continuing after round 1" in second.stderr
    assert [r["round"] for r in history(tmp_path / "run")] == [0, 1, 2]
    # stopping after round 1 and continuing ends where an uninterrupted run ends
    assert max_difference(adapter(out), adapter(tmp_path / "run")) <= TOLERANCE
    changed = openparity("federated", "simulate", *data, *common, "--rounds", "3", "--lr", "1e-3")
    assert changed.returncode == 2
    assert "other settings (learning-rate)" in changed.stderr


@pytest.mark.parametrize(
    "strategy",
    [
        ["--strategy", "fedavgm", "--server-step", "2", "--server-momentum", "0.9"],
        ["--strategy", "fedadam", "--server-lr", "0.01"],
    ],
    ids=["fedavgm", "fedadam"],
)
@pytest.mark.slow
def test_a_restarted_server_optimiser_continues_with_its_state(
    simulated, tiny_base, tmp_path, strategy
):
    """FedAvgM's momentum and FedAdam's moments (and round count, which its bias correction
    uses) live in the coordinator: they are saved with each round, so a restart ends where an
    uninterrupted run ends (without them, round 2 would start the server optimiser afresh)."""
    out, _ = simulated
    members = sorted((out / "members").glob("member-*.jsonl"))
    data = [arg for m in members for arg in ("--data", str(m))]

    def run(directory, rounds):
        done = openparity(
            "federated",
            "simulate",
            *data,
            "--base",
            str(tiny_base),
            "-o",
            str(directory),
            "--min-members",
            "3",
            *TRAINING,
            *strategy,
            "--rounds",
            str(rounds),
        )
        assert done.returncode == 0, done.stderr[-3000:]
        return done

    run(tmp_path / "straight", 2)
    run(tmp_path / "restarted", 1)
    assert (tmp_path / "restarted" / "rounds" / "0001" / "server_state.safetensors").is_file()
    assert "continuing after round 1" in run(tmp_path / "restarted", 2).stderr
    difference = max_difference(adapter(tmp_path / "straight"), adapter(tmp_path / "restarted"))
    assert difference <= TOLERANCE
    # the server optimiser is not FedAvg here: its adapter is far from the plain FedAvg run's
    assert max_difference(adapter(out), adapter(tmp_path / "straight")) > 100 * TOLERANCE


def rdp_bound(rounds: int, noise: float, delta: float) -> float:
    """The classical Gaussian RDP bound, min over orders of R*a/(2 z^2) + log(1/delta)/(a-1);
    the accountant's conversion is tighter, never looser."""
    import math

    orders = [1 + x / 10 for x in range(1, 2000)]
    return min(rounds * a / (2 * noise**2) + math.log(1 / delta) / (a - 1) for a in orders)


@pytest.mark.slow
def test_dp_noise_changes_the_global_update_and_reports_epsilon(simulated, tiny_base, tmp_path):
    from openparity.federated.coordinator import RoundLog, make_strategy
    from openparity.federated.privacy import spent
    from openparity.federated.settings import FederationSettings

    out, _ = simulated
    members = sorted((out / "members").glob("member-*.jsonl"))
    data = [arg for m in members for arg in ("--data", str(m))]
    result = openparity(
        "federated",
        "simulate",
        *data,
        "--base",
        str(tiny_base),
        "-o",
        str(tmp_path / "run"),
        "--rounds",
        "2",
        "--min-members",
        "3",
        *TRAINING,
        "--dp-noise",
        "0.8",
        "--dp-clip",
        "0.05",
        "--json",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    rounds = json.loads(result.stdout)["rounds"]
    spent_per_round = [r["privacy"] for r in rounds[1:]]
    epsilons = [p["epsilon"] for p in spent_per_round]
    assert 0 < epsilons[0] < epsilons[1]
    assert all(p["delta"] == 1e-5 for p in spent_per_round)
    for number, epsilon in enumerate(epsilons, start=1):
        assert epsilon <= rdp_bound(number, 0.8, 1e-5)
    # same members, seed and steps as the noiseless run: the difference is the clip and noise
    assert max_difference(adapter(out), adapter(tmp_path / "run")) > 1e-3
    # a restarted coordinator is charged for the rounds already released
    settings = FederationSettings(dp_noise=0.8, dp_clip=0.05, min_members=3)
    restarted = spent(make_strategy(settings, RoundLog(), done=2))
    assert restarted["epsilon"] == pytest.approx(epsilons[1], rel=1e-9)
    with pytest.raises(Exception, match="averaging strategies only"):
        FederationSettings(dp_noise=1.0, strategy="fedadam")
