"""Prometheus metrics of the gateway (prometheus_client, one registry per app)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from openparity.route.outcome import RouteResult

if TYPE_CHECKING:
    from openparity.route.cascade import HybridRouter

_BREAKER = {"closed": 0, "half_open": 1, "open": 2}


class GatewayMetrics:
    def __init__(self, router: HybridRouter) -> None:
        self.router = router
        self.registry = CollectorRegistry()
        self._children: dict[tuple[int, tuple[str, ...]], Any] = {}
        self.requests = Counter(
            "openparity_requests",
            "Gateway requests by route and status",
            ["route", "status"],
            registry=self.registry,
        )
        self.attempts = Counter(
            "openparity_attempts",
            "Upstream attempts by model, outcome and reason",
            ["model", "outcome", "reason"],
            registry=self.registry,
        )
        self.cost = Counter(
            "openparity_cost_usd",
            "Upstream cost in USD, failed attempts included",
            ["model"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "openparity_request_seconds",
            "Gateway request latency",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
            registry=self.registry,
        )
        self.breaker = Gauge(
            "openparity_breaker_state",
            "Circuit breaker: 0 closed, 1 half-open, 2 open",
            ["model"],
            registry=self.registry,
        )
        self.in_flight = Gauge(
            "openparity_upstream_in_flight",
            "Requests in flight per upstream",
            ["model"],
            registry=self.registry,
        )

    def observe(self, result: RouteResult, status: int) -> None:
        self._child(self.requests, result.route, str(status)).inc()
        self.latency.observe(result.latency_s)
        for attempt in result.attempts:
            self._child(self.attempts, attempt.model, attempt.outcome, attempt.reason).inc()
            if attempt.cost_usd:
                self._child(self.cost, attempt.model).inc(attempt.cost_usd)

    def _child(self, metric: Any, *values: str) -> Any:
        """`metric.labels(*values)`, looked up once per label set (prometheus_client takes a
        lock and rebuilds the key on every call)."""
        key = (id(metric), values)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*values)
        return child

    def render(self) -> bytes:
        for tier in self.router.tiers:
            self.breaker.labels(tier.name).set(_BREAKER[tier.breaker.state])
            self.in_flight.labels(tier.name).set(tier.slots.in_flight)
        return generate_latest(self.registry)
