"""The member's Flower ClientApp: train the global adapter on private data, report validation
loss. Only adapter tensors and counts leave the member.

Where a member's data is: the SuperNode's node config `data` in a deployment
(`openparity federated join --data DIR`); in a simulation, entry `partition-id` of the
run config's `member-data` list.
"""

from __future__ import annotations

from typing import Any

from flwr.app import ArrayRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp

from openparity.federated.errors import FederatedError
from openparity.federated.member import MemberData, read_member_data, train_round, validation_loss
from openparity.federated.privacy import WEIGHT_KEY, clip_when_asked
from openparity.federated.secure import secure_when_asked
from openparity.federated.settings import FederationSettings

# SecAgg+ masks what DP clipping (inside it) and training return
app = ClientApp(mods=[secure_when_asked, clip_when_asked])
_DATA: dict[tuple[str, str], MemberData] = {}


@app.train()
def train(message: Message, context: Context) -> Message:
    settings, data = _member(context)
    config = message.content["config"]
    server_round = int(config["server-round"]) + int(config.get("round-offset", 0))
    state = message.content["arrays"].to_torch_state_dict()
    mu = float(config.get("proximal-mu", 0.0))
    new_state, metrics = train_round(settings, state, data, server_round, proximal_mu=mu)
    metrics[WEIGHT_KEY] = 1.0  # the weight a DP coordinator averages with
    content = RecordDict({"arrays": ArrayRecord(new_state), "metrics": MetricRecord(metrics)})
    return Message(content=content, reply_to=message)


@app.evaluate()
def evaluate(message: Message, context: Context) -> Message:
    settings, data = _member(context)
    state = message.content["arrays"].to_torch_state_dict()
    loss = validation_loss(settings, state, data)
    metrics = {
        "validation-loss": loss,
        "num-examples": float(len(data.validation)),
        WEIGHT_KEY: 1.0,
    }
    return Message(content=RecordDict({"metrics": MetricRecord(metrics)}), reply_to=message)


def _member(context: Context) -> tuple[FederationSettings, MemberData]:
    import torch  # Flower converts state dicts only once torch is imported

    settings = FederationSettings.from_run_config(dict(context.run_config))
    location = _location(settings, dict(context.node_config))
    key = (location, repr(settings))
    if key not in _DATA:
        if settings.threads:
            torch.set_num_threads(settings.threads)
        _DATA[key] = read_member_data(location, settings)
    return settings, _DATA[key]


def _location(settings: FederationSettings, node_config: dict[str, Any]) -> str:
    if node_config.get("data"):
        return str(node_config["data"])
    members = [m for m in settings.member_data.split(";") if m]
    partition = node_config.get("partition-id")
    if partition is None or not members:
        raise FederatedError(
            "this member was given no data",
            hint="start it with `openparity federated join --data DIR`",
        )
    if int(partition) >= len(members):
        raise FederatedError(f"member {partition} has no data: {len(members)} data paths given")
    return members[int(partition)]
