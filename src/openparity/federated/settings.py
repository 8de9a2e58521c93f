"""What a federated run depends on, and its round-trip through Flower's run config.

Flower carries a run's settings as a flat mapping of scalars (`context.run_config`), the same
in simulation and in a deployment (`flwr run --run-config`). `FederationSettings` is that
mapping with types, defaults and checks, so the ServerApp and every ClientApp read one object.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from openparity.federated import privacy, secure
from openparity.federated.errors import FederatedError
from openparity.settings_cli import setting

STRATEGIES = ("fedavg", "fedprox", "fedadam", "fedavgm")


@dataclass(frozen=True)
class FederationSettings:
    """A federated run's settings; the CLI's options are built from these fields."""

    base: str = setting("smollm2-135m", "--base", "Shared base model (alias, GGUF, dir, hub id).")
    output: str = setting(
        ".openparity/federated",
        ("--output", "-o"),
        "Coordinator's run directory (rounds, final/).",
        shown=Path,
        parse=str,
    )
    rounds: int = setting(3, None, "Federated rounds.", min=1)
    strategy: str = setting("fedavg", None, "fedavg, fedprox, fedadam or fedavgm.")
    proximal_mu: float = setting(0.01, "--mu", "FedProx proximal weight.")
    server_lr: float = setting(0.001, None, "FedAdam server step size (eta).")
    server_step: float = setting(
        1.0, None, "FedAvgM: the global update is this multiple of the average."
    )
    server_momentum: float = setting(
        0.0, None, "FedAvgM: momentum of the global updates (saved with each round)."
    )
    fraction: float = setting(1.0, None, "Share of members asked to train each round.")
    min_members: int = setting(
        2, None, "Members a round needs (Flower's min_available_nodes).", min=1
    )
    round_timeout: float = setting(600.0, None, "Seconds to wait for a round's replies.")
    local_steps: int = setting(4, None, "Optimizer steps per member per round.", min=1)
    batch_size: int = setting(4, None, "Examples per local step.", min=1)
    learning_rate: float = setting(2e-4, "--lr", "Members' learning rate (constant).")
    lora_r: int = setting(8, None, "LoRA rank.", min=1)
    lora_alpha: int = setting(0, None, "LoRA alpha; 0: twice the rank.", min=0)
    max_length: int = setting(256, None, "Tokens per example (truncated).", min=16)
    validation_share: float = setting(0.1, None, "Each member's held-out share.")
    seed: int = setting(0, None, "Seed of the adapters, data order and member sampling.")
    decontaminate: str = setting(
        "gsm8k,humaneval,mbpp",
        None,
        "Benchmarks no member record may contain (dropped before training); '' for none.",
    )
    eval_task: str = setting("", None, "Harness task scored after each round.")
    eval_items: int = setting(0, None, "That task's first N items (0: all).", min=0)
    member_data: str = ""  # simulation only: each member's data, separated by ';'
    threads: int = setting(0, None, "Torch threads per member (0: torch's default).", min=0)
    dp_noise: float = setting(0.0, None, "DP noise multiplier (0: no DP).", min=0)
    dp_clip: float = setting(0.1, None, "DP: L2 bound of each member's update.")
    dp_delta: float = setting(1e-5, None, "DP: the delta epsilon is reported at.")
    secure: bool = setting(
        False, None, "SecAgg+: the coordinator sees only the sum of the updates."
    )
    secure_threshold: float = setting(
        0.6, None, "SecAgg+: share of neighbours that can unmask a dropout."
    )
    secure_max_weight: float = setting(1000.0, None, "SecAgg+: the largest member's example count.")

    def __post_init__(self) -> None:
        if not self.lora_alpha:
            object.__setattr__(self, "lora_alpha", 2 * self.lora_r)
        if self.strategy not in STRATEGIES:
            raise FederatedError(
                f"unknown strategy {self.strategy!r}", hint="one of " + ", ".join(STRATEGIES)
            )
        if self.rounds < 1 or self.local_steps < 1 or self.batch_size < 1:
            raise FederatedError("rounds, local steps and batch size must be at least 1")
        if self.server_step <= 0 or not 0 <= self.server_momentum < 1:
            raise FederatedError(
                f"server step {self.server_step} must be above 0 and server momentum"
                f" {self.server_momentum} in [0, 1)"
            )
        if not 0 < self.fraction <= 1:
            raise FederatedError(f"fraction {self.fraction} is not in (0, 1]")
        if self.min_members < 1:
            raise FederatedError("min members must be at least 1")
        if not 0 <= self.validation_share < 1:
            raise FederatedError(f"validation share {self.validation_share} is not in [0, 1)")
        privacy.check(self.dp_noise, self.dp_clip, self.dp_delta, self.strategy)
        if self.secure:
            secure.check(self.min_members, self.secure_threshold, self.secure_max_weight)

    def to_run_config(self) -> dict[str, Any]:
        """Flower's run config: kebab-case keys, scalar values."""
        return {name.replace("_", "-"): value for name, value in asdict(self).items()}

    @classmethod
    def from_run_config(cls, config: dict[str, Any]) -> FederationSettings:
        """The settings from a run config; unknown keys are an error, missing keys default."""
        known = {f.name: f for f in fields(cls)}
        values: dict[str, Any] = {}
        for key, value in config.items():
            name = key.replace("-", "_")
            if name not in known:
                raise FederatedError(f"unknown federated setting {key!r}")
            default = getattr(cls, name)
            if isinstance(default, bool) and not isinstance(value, bool):
                raise FederatedError(f"federated setting {key!r} must be true or false")
            values[name] = type(default)(value)
        return cls(**values)

    @property
    def benchmarks(self) -> tuple[str, ...]:
        return tuple(t.strip() for t in self.decontaminate.split(",") if t.strip())
