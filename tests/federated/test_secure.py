"""Secure aggregation (SecAgg+): the coordinator learns the members' average and nothing of
any one member's adapter; a member lost after the keys are shared is unmasked by the others.

The coordinator's SecureGrid and the members' real ClientApp (training included) run in this
process, joined by a loopback Grid that hands each message to the member it addresses and
records every reply the coordinator receives. The same code on Flower's runtimes is in
test_runtimes.py.
"""

from __future__ import annotations

import numpy as np
import pytest

from openparity.federated.errors import FederatedError
from openparity.federated.partition import split_members
from openparity.federated.secure import QUANTIZATION_RANGE, SecureGrid, quantization_error
from openparity.federated.settings import FederationSettings

MAX_WEIGHT = 100.0


class LoopbackGrid:
    """Delivers each message to its member's ClientApp, each member keeping its Context across
    the protocol's stages; records every reply. `crash(node, message)` True: that member
    fails on that message (fault injection)."""

    def __init__(self, contexts: dict, crash=None) -> None:
        from openparity.federated.client_app import app

        self.app, self.contexts, self.crash = app, contexts, crash
        self.received: list = []

    def get_node_ids(self):
        return list(self.contexts)

    def send_and_receive(self, messages, *, timeout=None):
        from flwr.app import Error, Message

        replies = []
        for message in map(wire, messages):
            node = message.metadata.dst_node_id
            if self.crash and self.crash(node, message):
                reply = Message(Error(code=0, reason="member crashed"), reply_to=message)
            else:
                reply = self.deliver(message)
            self.received.append(reply)
            replies.append(reply)
        return replies

    def deliver(self, message):
        """The member's reply; an exception becomes an error reply, as on Flower's runtimes."""
        from flwr.app import Error, Message

        try:
            return wire(self.app(message, self.contexts[message.metadata.dst_node_id]))
        except Exception as error:
            return Message(
                Error(code=0, reason=f"{type(error).__name__}: {error}"), reply_to=message
            )


def wire(message):
    """`message` as the other side gets it: through Flower's protobuf serialisation."""
    from flwr.common.serde import message_from_proto, message_to_proto

    return message_from_proto(message_to_proto(message))


@pytest.fixture(scope="module")
def alliance(alliance_data, tiny_base, tmp_path_factory, coordinator_identity):
    """Three members' data and settings; Flower's task identity as in a ServerApp process."""
    directory = tmp_path_factory.mktemp("secure")
    paths = split_members(alliance_data, 3, "topic", directory / "members")
    settings = FederationSettings(
        base=str(tiny_base),
        output=str(directory / "run"),
        min_members=3,
        local_steps=2,
        lora_r=4,
        lora_alpha=8,
        decontaminate="",
        seed=7,
        secure=True,
        secure_max_weight=MAX_WEIGHT,
    )
    return settings, {100 + i: str(p) for i, p in enumerate(paths)}


def contexts(settings, data):
    from flwr.app import Context, RecordDict

    run_config = settings.to_run_config()
    return {
        node: Context(
            run_id=1,
            node_id=node,
            node_config={"data": path},
            state=RecordDict(),
            run_config=run_config,
        )
        for node, path in data.items()
    }


def train_messages(settings, nodes):
    from flwr.app import ArrayRecord, ConfigRecord, Message, RecordDict
    from flwr.app.message_type import MessageType

    from openparity.federated.adapter import initial_state

    arrays = ArrayRecord(initial_state(settings))
    return [
        Message(
            RecordDict({"arrays": arrays, "config": ConfigRecord({"server-round": 1})}),
            dst_node_id=node,
            message_type=MessageType.TRAIN,
        )
        for node in nodes
    ]


@pytest.fixture(scope="module")
def plain_updates(alliance):
    """Each member's adapter and weight after round 1 without secure aggregation: what it
    would have sent in the clear."""
    settings, data = alliance
    grid = LoopbackGrid(contexts(settings, data))
    updates = {}
    for reply in grid.send_and_receive(train_messages(settings, data)):
        assert not reply.has_error(), reply.error.reason
        weight = float(reply.content["metrics"]["num-examples"])
        updates[reply.metadata.src_node_id] = (reply.content["arrays"].to_numpy_ndarrays(), weight)
    return updates


def secure_round(settings, data, crash=None):
    grid = LoopbackGrid(contexts(settings, data), crash)
    secure = SecureGrid(grid, "num-examples", settings.secure_threshold, MAX_WEIGHT, 60.0)
    replies = secure.send_and_receive(train_messages(settings, data))
    return grid, replies, secure.uploaded


def weighted_average(updates, nodes):
    total = sum(updates[n][1] for n in nodes)
    layers = zip(*(updates[n][0] for n in nodes), strict=True)
    weights = [updates[n][1] / total for n in nodes]
    return [sum(w * a for w, a in zip(weights, arrays, strict=True)) for arrays in layers], total


def close_to(replies, expected, total, members):
    """Every reply carries `expected`, within SecAgg+'s quantisation error."""
    tolerance = quantization_error(members, total / MAX_WEIGHT) + 1e-7
    for reply in replies:
        got = reply.content["arrays"].to_numpy_ndarrays()
        worst = max(float(np.abs(g - e).max()) for g, e in zip(got, expected, strict=True))
        assert worst <= tolerance, (worst, tolerance)


@pytest.mark.slow
def test_the_coordinator_gets_the_average_and_no_member_update(alliance, plain_updates):
    from flwr.common import bytes_to_ndarray
    from flwr.common.secure_aggregation.secaggplus_constants import RECORD_KEY_CONFIGS, Key

    settings, data = alliance
    grid, replies, uploaded = secure_round(settings, data)
    assert [r.has_error() for r in replies] == [False] * 3
    expected, total = weighted_average(plain_updates, list(data))
    close_to(replies, expected, total, 3)
    for reply in replies:  # the strategy's replies: the average, the member's own metrics
        metrics = reply.content["metrics"]
        assert metrics["num-examples"] == plain_updates[reply.metadata.src_node_id][1]

    # what crossed the wire to the coordinator: no array in the clear, anywhere
    assert all(
        len(array_record) == 0
        for r in grid.received
        for array_record in r.content.array_records.values()
    )
    blobs = [
        v
        for r in grid.received
        for record in r.content.config_records.values()
        for value in record.values()
        for v in (value if isinstance(value, list) else [value])
        if isinstance(v, bytes)
    ]
    assert blobs  # the keys, shares and masked vectors
    for arrays, _ in plain_updates.values():
        for array in arrays:
            if np.abs(array).max() > 0:
                assert not any(array.tobytes()[:64] in blob for blob in blobs)
    # the masked vectors are noise: uncorrelated with the member's quantised update
    masked = [
        r
        for r in grid.received
        if Key.MASKED_PARAMETERS in r.content.config_records[RECORD_KEY_CONFIGS]
    ]
    assert len(masked) == 3
    for reply in masked:
        vector = [
            bytes_to_ndarray(b)
            for b in reply.content.config_records[RECORD_KEY_CONFIGS][Key.MASKED_PARAMETERS]
        ]
        arrays, weight = plain_updates[reply.metadata.src_node_id]
        sent = np.concatenate([v.ravel() for v in vector[1:]]).astype(np.float64)
        own = np.concatenate([a.ravel() for a in arrays]) * weight / MAX_WEIGHT
        assert sent.size == own.size > 500
        assert abs(np.corrcoef(sent, own)[0, 1]) < 0.15
        assert 0.4 < sent.mean() / 2**32 < 0.6  # uniform over the 2**32 modulus
        assert sent.max() >= QUANTIZATION_RANGE  # beyond anything a quantised update reaches
    masked_bytes = sum(
        len(b)
        for r in masked
        for b in r.content.config_records[RECORD_KEY_CONFIGS][Key.MASKED_PARAMETERS]
    )
    adapter_bytes = sum(a.nbytes for a in plain_updates[100][0])
    assert uploaded > masked_bytes > 3 * adapter_bytes  # the round's traffic, counted


def test_a_member_lost_after_sharing_keys_is_unmasked_and_the_round_completes(
    alliance, plain_updates
):
    from flwr.common.secure_aggregation.secaggplus_constants import RECORD_KEY_CONFIGS, Key, Stage

    settings, data = alliance
    lost = 101

    def crash(node, message):  # after setup and key sharing, before its masked vector
        config = message.content.config_records.get(RECORD_KEY_CONFIGS, {})
        return node == lost and config.get(Key.STAGE) == Stage.COLLECT_MASKED_VECTORS

    _, replies, _ = secure_round(settings, data, crash)
    by_node = {r.metadata.src_node_id: r for r in replies}
    assert by_node[lost].has_error() and "crashed" in by_node[lost].error.reason
    survivors = [n for n in data if n != lost]
    expected, total = weighted_average(plain_updates, survivors)
    close_to([by_node[n] for n in survivors], expected, total, 2)


@pytest.mark.slow
def test_a_member_over_the_max_weight_fails_with_its_reason(alliance):
    from dataclasses import replace

    settings, data = alliance
    small = replace(settings, secure_max_weight=5.0)  # members hold 16 training records or so
    grid = LoopbackGrid(contexts(small, data))
    secure = SecureGrid(grid, "num-examples", small.secure_threshold, 5.0, 60.0)
    replies = secure.send_and_receive(train_messages(small, data))
    assert all(r.has_error() for r in replies)
    assert all("--secure-max-weight" in r.error.reason for r in replies)


def test_secure_settings_that_cannot_keep_updates_private_are_refused(tiny_base):
    with pytest.raises(FederatedError, match="--min-members 3"):
        FederationSettings(base=str(tiny_base), min_members=2, secure=True)
    with pytest.raises(FederatedError, match="secure-threshold"):
        FederationSettings(base=str(tiny_base), min_members=3, secure=True, secure_threshold=0)
    with pytest.raises(FederatedError, match="true or false"):
        FederationSettings.from_run_config({"secure": "no"})
