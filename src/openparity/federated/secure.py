"""Secure aggregation for the alliance's training rounds, on Flower's SecAgg+ protocol.

Each member masks its trained adapter (pairwise masks agreed with its neighbours by
Diffie-Hellman, plus a private mask whose seed is secret-shared); the coordinator sums the masked
vectors and learns only the weighted average. A member that drops out after the keys are
shared is unmasked from its neighbours' shares, so the round still completes. Only
the counts and losses a member reports travel in the clear.

Flower 1.42 implements SecAgg+ for its legacy Fit messages only (`SecAggPlusWorkflow`,
`secaggplus_mod`). This module runs that implementation under the Message API strategies:
- `SecureGrid` wraps the coordinator's Grid. Training messages go through the SecAgg+
  workflow; every other message goes straight to the members. The strategy gets one reply per
  member that took part. Each reply carries the member's metrics and the unmasked average,
  never the member's own adapter.
- `secure_when_asked` is the member's mod. It answers the protocol's stages, and around the
  member's own training it converts between Fit records and the app's `arrays`/`config`
  records.
Averages are exact up to the protocol's quantisation (`quantization_error`): each value is
clipped to +-`CLIPPING_RANGE`, scaled by the member's weight over `max_weight`, and rounded
stochastically to a step of 2 * `CLIPPING_RANGE` / `QUANTIZATION_RANGE`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from openparity.federated.errors import FederatedError

ARRAY_KEYS = "secure-array-keys"  # the adapter's tensor names, in the order they are masked
WEIGHT_KEY = "secure-weight-key"  # the metric each member is weighted by
MAX_WEIGHT = "secure-max-weight"
CLIPPING_RANGE = 8.0  # Flower's default; LoRA weights stay far inside it
QUANTIZATION_RANGE = 2**22  # with a 2**32 modulus: sums of up to 1,024 members do not wrap


def check(min_members: int, threshold: float, max_weight: float) -> None:
    """Refuse secure-aggregation settings that could not keep updates private."""
    if min_members < 3:
        raise FederatedError(
            "secure aggregation needs --min-members 3 or more",
            hint="with two members, each learns the other's update from the average",
        )
    if not 0 < threshold <= 1:
        raise FederatedError(f"--secure-threshold {threshold} is not in (0, 1]")
    if max_weight <= 0:
        raise FederatedError("--secure-max-weight must be positive")


def quantization_error(members: int, weight_share: float) -> float:
    """Bound on the error of one averaged value: each of `members` rounds its weight-scaled
    values stochastically to one quantisation step, and the sum is divided by the weights'
    total, `weight_share` of `max_weight`."""
    return members * 2 * CLIPPING_RANGE / QUANTIZATION_RANGE / weight_share


@dataclass
class _Member:
    """The legacy workflow's handle on a member: all it reads is the node id."""

    node_id: int


class _FixedSample:
    """The legacy strategy SecAggPlusWorkflow drives: it asks the members the Message API
    strategy chose, with the instructions it gave, and keeps what the workflow unmasks."""

    def __init__(self, instructions: list[tuple[int, Any]]) -> None:
        self.instructions = instructions
        self.results: list[Any] = []

    def configure_fit(self, server_round: int, parameters: Any, client_manager: Any) -> list:
        from flwr.common import FitIns

        return [(_Member(nid), FitIns(parameters, config)) for nid, config in self.instructions]

    def aggregate_fit(self, server_round: int, results: list, failures: list) -> tuple:
        self.results = results  # every FitRes carries the same unmasked average
        return (results[0][1].parameters if results else None), {}


class _Relay:
    """The coordinator's Grid, remembering why each member failed a stage and counting the
    protocol's bytes the members sent (keys, shares, masked vectors)."""

    def __init__(self, grid: Any) -> None:
        self.grid = grid
        self.reasons: dict[int, str] = {}
        self.uploaded = 0

    def send_and_receive(self, messages: Any, *, timeout: float | None = None) -> Any:
        replies = list(self.grid.send_and_receive(messages, timeout=timeout))
        for reply in replies:
            if reply.has_error():
                self.reasons.setdefault(reply.metadata.src_node_id, reply.error.reason)
            else:
                self.uploaded += sum(map(_byte_size, reply.content.config_records.values()))
        return replies

    def __getattr__(self, name: str) -> Any:
        return getattr(self.grid, name)


class SecureGrid:
    """A Grid whose training rounds run SecAgg+ (see the module's docstring)."""

    def __init__(
        self, grid: Any, weight_key: str, threshold: float, max_weight: float, timeout: float
    ) -> None:
        self.grid = grid
        self.weight_key = weight_key
        self.threshold = threshold
        self.max_weight = max_weight
        self.timeout = timeout
        self.rounds = 0
        self.uploaded = 0  # bytes the members sent in the last secure round, all stages

    def __getattr__(self, name: str) -> Any:
        return getattr(self.grid, name)

    def send_and_receive(self, messages: Any, *, timeout: float | None = None) -> Any:
        from flwr.app.message_type import MessageType

        messages = list(messages)
        if messages and all(m.metadata.message_type == MessageType.TRAIN for m in messages):
            return self._secure_round(messages)
        return self.grid.send_and_receive(messages, timeout=timeout)

    def _secure_round(self, messages: list[Any]) -> list[Any]:
        """Run SecAgg+ over the members `messages` address; one reply per message."""
        from flwr.common import ndarrays_to_parameters
        from flwr.server import LegacyContext, ServerConfig
        from flwr.server.workflow import SecAggPlusWorkflow

        self.rounds += 1
        arrays = messages[0].content["arrays"]
        names = list(arrays.keys())
        parameters = ndarrays_to_parameters([arrays[name].numpy() for name in names])
        protocol = {ARRAY_KEYS: names, WEIGHT_KEY: self.weight_key, MAX_WEIGHT: self.max_weight}
        instructions = [
            (m.metadata.dst_node_id, {**dict(m.content["config"]), **protocol}) for m in messages
        ]
        sample = _FixedSample(instructions)
        context = LegacyContext(
            context=_blank_context(), config=ServerConfig(num_rounds=1), strategy=sample
        )
        _set_round(context, self.rounds, parameters)
        workflow = SecAggPlusWorkflow(
            num_shares=1.0,  # every sampled member holds a share of every other's secrets
            reconstruction_threshold=self.threshold,
            max_weight=self.max_weight,
            clipping_range=CLIPPING_RANGE,
            quantization_range=QUANTIZATION_RANGE,
            timeout=self.timeout,
        )
        relay = _Relay(self.grid)
        workflow(relay, context)
        self.uploaded = relay.uploaded
        return _replies(messages, sample.results, names, arrays, relay.reasons)


def _byte_size(record: Any) -> int:
    values = [
        v for value in record.values() for v in (value if isinstance(value, list) else [value])
    ]
    return sum(len(v) for v in values if isinstance(v, bytes))


def _blank_context() -> Any:
    from flwr.app import Context, RecordDict

    return Context(run_id=0, node_id=0, node_config={}, state=RecordDict(), run_config={})


def _set_round(context: Any, number: int, parameters: Any) -> None:
    """What the legacy workflow reads from its context: the round and the global weights."""
    from flwr.app import ConfigRecord
    from flwr.compat.common.recorddict_compat import parameters_to_arrayrecord
    from flwr.server.workflow.constant import MAIN_CONFIGS_RECORD, MAIN_PARAMS_RECORD
    from flwr.server.workflow.constant import Key as WorkflowKey

    context.state.config_records[MAIN_CONFIGS_RECORD] = ConfigRecord(
        {WorkflowKey.CURRENT_ROUND: number}
    )
    context.state.array_records[MAIN_PARAMS_RECORD] = parameters_to_arrayrecord(
        parameters, keep_input=True
    )


_NOT_UNMASKED = (
    "left the secure round: no reply in time, or too few members answered for the sum to be"
    " unmasked (see --secure-threshold)"
)


def _replies(
    messages: list[Any], results: list, names: list[str], arrays: Any, reasons: dict[int, str]
) -> list[Any]:
    """The strategy's view of a secure round: for each member that took part, its metrics and
    the unmasked average; for each other member, an error saying why it is missing."""
    from flwr.app import Array, ArrayRecord, Error, Message, MetricRecord, RecordDict
    from flwr.common import parameters_to_ndarrays

    by_node = {member.node_id: fitres for member, fitres in results}
    average = parameters_to_ndarrays(results[0][1].parameters) if results else []
    dtypes = [arrays[name].numpy().dtype for name in names]
    replies = []
    for message in messages:
        node = message.metadata.dst_node_id
        fitres = by_node.get(node)
        if fitres is None:
            reason = reasons.get(node, _NOT_UNMASKED)
            replies.append(Message(Error(code=0, reason=reason), reply_to=message))
            continue
        record = ArrayRecord(
            {n: Array(a.astype(t)) for n, a, t in zip(names, average, dtypes, strict=True)}
        )
        metrics = MetricRecord({k: v for k, v in fitres.metrics.items() if _number(v)})
        replies.append(
            Message(RecordDict({"arrays": record, "metrics": metrics}), reply_to=message)
        )
    return replies


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def secure_when_asked(message: Any, context: Any, call_next: Any) -> Any:
    """A ClientApp mod: SecAgg+ for the training messages of a secure round (they carry the
    protocol's config record), nothing otherwise."""
    from flwr.app.message_type import MessageType
    from flwr.client.mod import secaggplus_mod
    from flwr.common.secure_aggregation.secaggplus_constants import RECORD_KEY_CONFIGS

    if message.metadata.message_type != MessageType.TRAIN:
        return call_next(message, context)
    if RECORD_KEY_CONFIGS not in message.content.config_records:
        return call_next(message, context)

    def train_as_fit(fit_message: Any, fit_context: Any) -> Any:
        config = fit_message.content.config_records["fitins.config"]
        reply = call_next(_as_train_message(fit_message), fit_context)
        if reply.has_error():
            raise FederatedError(reply.error.reason)
        return _as_fit_reply(reply, config)

    return secaggplus_mod(message, context, train_as_fit)


def _as_train_message(fit_message: Any) -> Any:
    """A legacy Fit instruction as the message the member's train() reads."""
    from flwr.app import Array, ArrayRecord, ConfigRecord, Message, RecordDict
    from flwr.common import parameters_to_ndarrays
    from flwr.compat.common.recorddict_compat import arrayrecord_to_parameters

    config = dict(fit_message.content.config_records["fitins.config"])
    names = list(config[ARRAY_KEYS])
    parameters = arrayrecord_to_parameters(
        fit_message.content.array_records["fitins.parameters"], keep_input=True
    )
    values = parameters_to_ndarrays(parameters)
    arrays = ArrayRecord({n: Array(v) for n, v in zip(names, values, strict=True)})
    own = {k: v for k, v in config.items() if k not in (ARRAY_KEYS, WEIGHT_KEY, MAX_WEIGHT)}
    content = RecordDict({"arrays": arrays, "config": ConfigRecord(own)})
    return Message(content=content, metadata=fit_message.metadata)


def _as_fit_reply(reply: Any, config: Any) -> Any:
    """The member's train() reply as the legacy FitRes that secaggplus_mod masks."""
    from flwr.app import Message
    from flwr.common import Code, FitRes, Status, ndarrays_to_parameters
    from flwr.compat.common.recorddict_compat import fitres_to_recorddict

    arrays, metrics = reply.content["arrays"], dict(reply.content["metrics"])
    weight = float(metrics[str(config[WEIGHT_KEY])])
    max_weight = float(config[MAX_WEIGHT])
    if weight > max_weight:
        raise FederatedError(
            f"this member's weight {weight:g} is above --secure-max-weight {max_weight:g}",
            hint="the coordinator must raise --secure-max-weight to the largest member's count",
        )
    values = [arrays[name].numpy() for name in config[ARRAY_KEYS]]
    fitres = FitRes(
        status=Status(code=Code.OK, message=""),
        parameters=ndarrays_to_parameters(values),
        num_examples=round(weight),
        metrics=metrics,
    )
    return Message(content=fitres_to_recorddict(fitres, keep_input=False), metadata=reply.metadata)
