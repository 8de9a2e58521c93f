"""A member's side without Flower: data checks, the split into members, local training with
and without FedProx's proximal term, the settings' round trip through Flower's run config."""

from __future__ import annotations

import json

import pytest

from openparity.federated.errors import FederatedError
from openparity.federated.member import read_member_data, train_round
from openparity.federated.partition import split_members
from openparity.federated.settings import FederationSettings
from tests.cli import openparity
from tests.federated.conftest import alliance_records, write_jsonl


def test_settings_travel_through_flowers_run_config_unchanged():
    settings = FederationSettings(base="/模型/base", rounds=5, strategy="fedprox", fraction=0.5)
    config = settings.to_run_config()
    assert config["proximal-mu"] == settings.proximal_mu and config["base"] == "/模型/base"
    assert FederationSettings.from_run_config(config) == settings
    with pytest.raises(FederatedError, match="unknown federated setting 'roundz'"):
        FederationSettings.from_run_config({"roundz": 3})
    with pytest.raises(FederatedError, match="unknown strategy 'fedsgd'"):
        FederationSettings(strategy="fedsgd")
    for step, momentum in ((0.0, 0.0), (1.0, 1.0), (1.0, -0.1)):
        with pytest.raises(FederatedError, match=r"server step .* server momentum"):
            FederationSettings(strategy="fedavgm", server_step=step, server_momentum=momentum)


def test_an_iid_split_is_stable_and_a_topic_split_gives_each_member_its_own_topics(tmp_path):
    source = write_jsonl(tmp_path / "all.jsonl", alliance_records(60))
    first = split_members(source, 3, "iid", tmp_path / "a")
    second = split_members(source, 3, "iid", tmp_path / "b")
    assert [p.read_text("utf-8") for p in first] == [p.read_text("utf-8") for p in second]
    assert sum(len(p.read_text("utf-8").splitlines()) for p in first) == 60
    by_topic = split_members(source, 3, "topic", tmp_path / "c")
    topics = [
        {json.loads(line)["topic"] for line in p.read_text("utf-8").splitlines()} for p in by_topic
    ]
    assert sorted(map(sorted, topics)) == [["addition"], ["doubling"], ["中文"]]
    with pytest.raises(FederatedError, match="3 values of 'topic' cannot make 4 members"):
        split_members(source, 4, "topic", tmp_path / "d")
    with pytest.raises(FederatedError, match="no 'sector' field"):
        split_members(source, 2, "sector", tmp_path / "e")


def test_member_data_is_decontaminated_and_split_by_record_id(tmp_path):
    from openparity.bench.tasks import get_task
    from openparity.data.decontam import item_text

    leaked = item_text(get_task("gsm8k").items()[3])
    rows = alliance_records(40)
    rows.append(
        {
            "id": "leak",
            "messages": [
                {"role": "user", "content": leaked},
                {"role": "assistant", "content": "42"},
            ],
        }
    )
    folder = tmp_path / "member"  # an `openparity data publish` folder
    (folder / "data").mkdir(parents=True)
    write_jsonl(folder / "data" / "train.jsonl", rows)
    settings = FederationSettings(decontaminate="gsm8k", validation_share=0.25)
    data = read_member_data(str(folder), settings)
    assert data.dropped == {"contaminated": 1}  # never trained on, never validated on
    assert len(data.train) + len(data.validation) == 40
    assert 3 <= len(data.validation) <= 18  # about a quarter, by hash
    again = read_member_data(str(folder), settings)
    assert again.digest == data.digest and again.validation == data.validation


@pytest.mark.parametrize(
    ("content", "message"),
    [(None, "does not exist"), ("{not json\n", "not JSON"), ('{"x": 1}\n', "SFT record needs")],
)
def test_bad_member_data_is_one_clear_error(tmp_path, content, message):
    path = tmp_path / "member.jsonl"
    if content is not None:
        path.write_text(content, encoding="utf-8")
    with pytest.raises(Exception, match=message):
        read_member_data(str(path), FederationSettings(decontaminate=""))


@pytest.mark.slow
def test_fedprox_keeps_a_member_closer_to_the_global_adapter(tmp_path, tiny_base):
    from openparity.federated.adapter import initial_state

    settings = FederationSettings(
        base=str(tiny_base),
        lora_r=4,
        lora_alpha=8,
        local_steps=6,
        learning_rate=5e-3,
        decontaminate="",
    )
    data = read_member_data(str(write_jsonl(tmp_path / "m.jsonl", alliance_records(24))), settings)
    start = initial_state(settings)

    def drift(mu: float) -> float:
        state, metrics = train_round(settings, start, data, server_round=1, proximal_mu=mu)
        assert metrics["num-examples"] == len(data.train) and metrics["train-loss"] > 0
        return sum(float((state[k] - start[k]).pow(2).sum()) for k in start) ** 0.5

    free, again, held = drift(0.0), drift(0.0), drift(50.0)
    assert free == pytest.approx(again, rel=1e-6)  # same seed, round and data: same update
    assert held < 0.9 * free


def test_the_cli_refuses_bad_settings_in_one_line(tmp_path):
    source = write_jsonl(tmp_path / "all.jsonl", alliance_records(12))
    wrong = openparity(
        "federated",
        "simulate",
        "--data",
        str(source),
        "--members",
        "2",
        "-o",
        str(tmp_path / "run"),
        "--strategy",
        "fedsgd",
    )
    assert wrong.returncode == 2 and "unknown strategy 'fedsgd'" in wrong.stderr
    assert "Traceback" not in wrong.stderr
    missing = openparity(
        "federated", "simulate", "--data", str(tmp_path / "nope"), "-o", str(tmp_path / "run")
    )
    assert missing.returncode == 2 and "does not exist" in missing.stderr
    assert not (tmp_path / "run" / "rounds").exists()  # nothing started
    (tmp_path / "bad.jsonl").write_text('{"messages": "not a list"}\n', encoding="utf-8")
    bad = ["--data", str(tmp_path / "bad.jsonl"), "--home", str(tmp_path / "m")]
    joined = openparity("federated", "join", "--superlink", "127.0.0.1:9", *bad)
    assert joined.returncode == 2 and "bad.jsonl:1" in joined.stderr
    assert not (tmp_path / "m" / "supernode.log").exists()  # no SuperNode was started


def test_members_silent_past_the_round_timeout_are_counted_as_failed(coordinator_identity):
    """Flower returns only the replies that came in time; the round says who never answered
    and keeps the global adapter when too few did."""
    import torch
    from flwr.app import ArrayRecord, Message, MetricRecord, RecordDict
    from flwr.app.message_type import MessageType

    from openparity.federated.coordinator import RoundLog, make_strategy

    round_log = RoundLog()
    strategy = make_strategy(FederationSettings(min_members=2), round_log)
    strategy.asked = 3  # three members were asked; one answered in time
    asked = Message(RecordDict(), dst_node_id=7, message_type=MessageType.TRAIN)
    content = RecordDict(
        {
            "arrays": ArrayRecord({"w": torch.ones(2)}),
            "metrics": MetricRecord({"num-examples": 4.0}),
        }
    )
    arrays, _ = strategy.aggregate_train(1, [Message(content, reply_to=asked)])
    assert arrays is None and round_log.current["skipped"]
    assert round_log.current["failed"] == ["no reply within the round timeout (600 s)"] * 2


def test_a_run_whose_every_round_was_skipped_fails_with_the_members_reasons(tmp_path):
    """Both members dropped all their data: every round is skipped, the global adapter never
    moved; the coordinator says why the members failed and does not report success."""
    import json

    from openparity.federated.coordinator import ROUND_FILE, Coordinator, round_dir
    from openparity.federated.errors import FederatedError

    coordinator = Coordinator(FederationSettings(output=tmp_path / "run", rounds=2))
    reason = "no usable examples in the member's data: {'contaminated': 17}"
    for number in (1, 2):
        entry = {"round": number, "skipped": True, "failed": [reason, reason]}
        directory = round_dir(coordinator.output, number)
        directory.mkdir(parents=True)
        (directory / "adapter_model.safetensors").write_bytes(b"")
        (directory / ROUND_FILE).write_text(json.dumps(entry), encoding="utf-8")
        coordinator.history.append(entry)
    with pytest.raises(FederatedError) as refused:
        coordinator._finish()
    assert "no round succeeded: all 2 were skipped" in refused.value.message
    assert f"{reason} (4x)" in refused.value.message
    coordinator.history[1] = {"round": 2, "members": 2, "failed": []}  # one round aggregated
    assert coordinator._finish().name == "final"
