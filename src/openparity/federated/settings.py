"""What a federated run depends on, and its round-trip through Flower's run config.

Flower carries a run's settings as a flat mapping of scalars (`context.run_config`), the same
in simulation and in a deployment (`flwr run --run-config`). `FederationSettings` is that
mapping with types, defaults and checks, so the ServerApp and every ClientApp read one object.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

from openparity.federated import privacy, secure
from openparity.federated.errors import FederatedError

STRATEGIES = ("fedavg", "fedprox", "fedadam", "fedavgm")


@dataclass(frozen=True)
class FederationSettings:
    base: str = "smollm2-135m"  # the shared base model (embedded alias, GGUF, dir or hub id)
    output: str = ".openparity/federated"  # the coordinator's run directory
    rounds: int = 3
    strategy: str = "fedavg"
    proximal_mu: float = 0.01  # fedprox: weight of the proximal term
    server_lr: float = 0.001  # fedadam: the server optimizer's step size (eta)
    server_step: float = 1.0  # fedavgm: the global update is this multiple of the average update
    server_momentum: float = 0.0  # fedavgm: momentum of the global updates (0: none)
    fraction: float = 1.0  # of connected members asked to train each round
    min_members: int = 2  # a round needs this many; fewer replies and the round is skipped
    round_timeout: float = 600.0  # seconds the coordinator waits for a round's replies
    local_steps: int = 4  # optimizer steps per member per round
    batch_size: int = 4
    learning_rate: float = 2e-4
    lora_r: int = 8
    lora_alpha: int = 16
    max_length: int = 256
    validation_share: float = 0.1  # of each member's records held out for its validation loss
    seed: int = 0
    decontaminate: str = "gsm8k,humaneval,mbpp"  # benchmarks no member record may contain
    eval_task: str = ""  # the coordinator's harness task after each round ('' for none)
    eval_items: int = 0  # that task's first N items (0: all)
    member_data: str = ""  # simulation only: each member's data, separated by ';'
    threads: int = 0  # torch threads per member process (0: torch's default)
    dp_noise: float = 0.0  # DP noise multiplier (0: no differential privacy)
    dp_clip: float = 0.1  # DP: L2 bound of each member's adapter update
    dp_delta: float = 1e-5  # DP: the delta epsilon is reported at
    secure: bool = False  # SecAgg+: the coordinator sees only the sum of the members' updates
    secure_threshold: float = 0.6  # SecAgg+: share of a member's neighbours that can unmask it
    secure_max_weight: float = 1000.0  # SecAgg+: the largest weight (examples) a member may have

    def __post_init__(self) -> None:
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
