"""ROUTE: the hybrid gateway. The open model answers first, its answer is checked, and the
request falls back to the next tier on a failed check or on any failure; every attempt is
costed in a ledger. `openparity serve` runs it behind an OpenAI-compatible API; the same
cascade is a library:

    async with HybridRouter.from_file("gateway.yaml") as router:
        result = await router.generate([{"role": "user", "content": "2 + 2?"}], max_tokens=32)
        result.text, result.answered_by, result.route, result.cost_usd

The names below load on first use, so the CLI can name the package without loading the
server's dependencies.
"""

from __future__ import annotations

from openparity.lazy_exports import lazy_getattr

_HOMES = {
    "AllTiersFailedError": "outcome",
    "GatewayConfig": "config",
    "HybridRouter": "cascade",
    "RouteResult": "outcome",
    "load_gateway_config": "config",
}

__all__ = sorted(_HOMES)

__getattr__ = lazy_getattr(__name__, _HOMES)
