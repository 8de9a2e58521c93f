"""Total cost of ownership per million tokens: a closed API vs self-hosting an open model,
the break-even volume, and the hybrid mix (open share served in-house, the rest by the API).

Self-hosting is priced as reserved GPUs: a fixed monthly cost whatever the traffic, with a
capacity (tokens per month at the given utilisation). Traffic beyond capacity is refused as an
input error rather than silently priced.
"""

from __future__ import annotations

from dataclasses import dataclass

from openparity.errors import OpenparityError
from openparity.models.prices import Price

HOURS_PER_MONTH = 730.0


class CostInputError(OpenparityError):
    """The cost inputs cannot describe a real deployment."""


@dataclass(frozen=True)
class SelfHosting:
    gpu_hourly_usd: float
    gpus: int
    tokens_per_second: float  # sustained output tokens per second for the whole deployment
    utilisation: float = 0.6  # share of the month the capacity is actually used
    ops_overhead: float = 0.2  # engineering, monitoring, storage... as a share of GPU cost

    def __post_init__(self) -> None:
        if self.gpu_hourly_usd < 0 or self.gpus < 1 or self.tokens_per_second <= 0:
            raise CostInputError(
                "self-hosting needs gpu $/hour >= 0, at least 1 GPU and a positive throughput"
            )
        if not 0 < self.utilisation <= 1 or self.ops_overhead < 0:
            raise CostInputError("utilisation must be in (0, 1] and ops overhead >= 0")

    @property
    def monthly_usd(self) -> float:
        return self.gpu_hourly_usd * self.gpus * HOURS_PER_MONTH * (1 + self.ops_overhead)

    @property
    def monthly_capacity_tokens(self) -> float:
        return self.tokens_per_second * 3600 * HOURS_PER_MONTH * self.utilisation


@dataclass(frozen=True)
class Traffic:
    monthly_requests: float
    prompt_tokens: float  # per request
    completion_tokens: float  # per request

    @property
    def monthly_tokens(self) -> float:
        return self.monthly_requests * (self.prompt_tokens + self.completion_tokens)

    @property
    def monthly_completion_tokens(self) -> float:
        return self.monthly_requests * self.completion_tokens


@dataclass(frozen=True)
class CostReport:
    api_usd_per_mtok: float  # blended over the traffic's prompt / completion mix
    api_monthly_usd: float
    self_hosted_monthly_usd: float
    self_hosted_usd_per_mtok: float  # at this traffic (fixed cost / tokens served)
    capacity_used: float  # share of the deployment's monthly capacity this traffic needs
    break_even_monthly_requests: float  # above it, self-hosting is cheaper
    hybrid_open_share: float
    hybrid_monthly_usd: float  # self-hosting fixed cost + the API for the rest
    saving_vs_api: float  # (api - hybrid) / api


def compare_costs(
    api: Price, hosting: SelfHosting, traffic: Traffic, *, open_share: float = 1.0
) -> CostReport:
    """Costs of serving `traffic` by the API, by self-hosting, and open-first (`open_share` of
    requests answered in-house, e.g. the gateway's measured open share)."""
    if traffic.monthly_requests < 0 or traffic.prompt_tokens < 0 or traffic.completion_tokens < 0:
        raise CostInputError("traffic volumes must not be negative")
    if not 0 <= open_share <= 1:
        raise CostInputError(f"open share {open_share} is not in [0, 1]")
    per_request = api.cost(traffic.prompt_tokens, traffic.completion_tokens)
    api_monthly = per_request * traffic.monthly_requests
    tokens_per_request = traffic.prompt_tokens + traffic.completion_tokens
    api_per_mtok = per_request / tokens_per_request * 1e6 if tokens_per_request else 0.0
    # capacity is in output tokens: generation is what a deployment is sized by
    capacity_used = traffic.monthly_completion_tokens * open_share / hosting.monthly_capacity_tokens
    if capacity_used > 1:
        raise CostInputError(
            f"the open share of this traffic needs {capacity_used:.1f}x the deployment's capacity",
            hint="add GPUs, raise the throughput or utilisation, or lower the open share",
        )
    fixed = hosting.monthly_usd
    hybrid = fixed + (1 - open_share) * api_monthly
    served = traffic.monthly_tokens
    return CostReport(
        api_usd_per_mtok=api_per_mtok,
        api_monthly_usd=api_monthly,
        self_hosted_monthly_usd=fixed,
        self_hosted_usd_per_mtok=fixed / served * 1e6 if served else float("inf"),
        capacity_used=capacity_used,
        break_even_monthly_requests=fixed / per_request if per_request else float("inf"),
        hybrid_open_share=open_share,
        hybrid_monthly_usd=hybrid,
        saving_vs_api=(api_monthly - hybrid) / api_monthly if api_monthly else 0.0,
    )
