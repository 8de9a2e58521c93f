"""Differential privacy for the alliance: each member clips its update (L2 norm over the
whole adapter) before it leaves; the coordinator adds Gaussian noise to the average and
accounts the (epsilon, delta) spent with Flower's RDP accountant (Google's dp-accounting).

This is client-level central DP: it bounds what the released global adapters reveal about any
one member's participation. The coordinator still sees each clipped update; hiding those is
secure aggregation's job. Accounting assumes no amplification by sampling: every round
samples exactly `min_members` members, each with the same weight, as Flower requires.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from openparity.federated.errors import FederatedError

if TYPE_CHECKING:  # the settings check DP's options with `check` below: no import back
    from openparity.federated.settings import FederationSettings

WEIGHT_KEY = "dp-weight"  # every member's weight under DP: 1 (the average must be uniform)


def clip_when_asked(message: Any, context: Any, call_next: Any) -> Any:
    """A ClientApp mod: Flower's client-side fixed clipping on training messages that carry
    a clipping norm (the DP coordinator sends one), nothing otherwise."""
    from flwr.app import MessageType
    from flwr.clientapp.mod import fixedclipping_mod
    from flwr.supercore.differential_privacy import KEY_CLIPPING_NORM

    if message.metadata.message_type == MessageType.TRAIN:
        config = message.content.get("config")
        if config is not None and KEY_CLIPPING_NORM in config:
            return fixedclipping_mod(message, context, call_next)
    return call_next(message, context)


def check(noise: float, clip: float, delta: float, strategy: str) -> None:
    """Refuse DP settings the accounting does not cover."""
    if noise < 0 or clip <= 0 or not 0 < delta < 1:
        raise FederatedError("DP needs --dp-noise >= 0, --dp-clip > 0 and 0 < --dp-delta < 1")
    if noise and strategy == "fedadam":
        raise FederatedError(
            "DP accounting covers averaging strategies only",
            hint="use --strategy fedavg or fedprox with --dp-noise",
        )


def private_strategy(
    strategy_cls: type, inner: Any, settings: FederationSettings, done: int
) -> Any:
    """`inner` wrapped in Flower's client-side fixed clipping DP strategy (`strategy_cls`, the
    guarded version), its accountant already charged for the `done` rounds of an earlier
    process (a restart must not forget privacy already spent)."""
    from flwr.supercore.privacy_accounting import (
        GaussianPrivacyEvent,
        NeighboringRelation,
        PrivacyConfig,
        SamplingMethod,
    )
    from flwr.supercore.privacy_accounting.rdp_accountant import RdpAccountant

    config = PrivacyConfig(
        target_delta=settings.dp_delta,
        population_size=settings.min_members,
        neighboring_relation=NeighboringRelation.ADD_OR_REMOVE_ONE,
        sampling_method=SamplingMethod.NO_AMPLIFICATION,
    )
    accountant = RdpAccountant(config)
    if done:
        event = GaussianPrivacyEvent(settings.dp_noise, settings.min_members, settings.min_members)
        accountant.compose(event, count=done)
    return strategy_cls(
        inner,
        noise_multiplier=settings.dp_noise,
        clipping_norm=settings.dp_clip,
        num_sampled_clients=settings.min_members,
        accountant=accountant,
    )


def spent(strategy: Any) -> dict[str, Any] | None:
    """(epsilon, delta) spent so far by a DP strategy; None without DP."""
    privacy_spent = getattr(strategy, "privacy_spent", None)
    found = privacy_spent() if privacy_spent else None
    if found is None:
        return None
    return {"epsilon": found.epsilon, "delta": found.delta, "releases": found.num_releases}
