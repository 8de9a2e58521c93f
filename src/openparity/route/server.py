"""`openparity serve`: the HybridRouter behind an OpenAI-compatible HTTP API (FastAPI).

POST /v1/chat/completions (streamed or not; tools, n choices, response_format and every other
field passed on), /v1/embeddings and /v1/completions (forwarded to the first tier that serves
them), GET /v1/models, /health, /metrics. Every answer
names the model that gave it and the route taken (x-openparity-model, x-openparity-route,
x-openparity-request-id headers; an `openparity` object in JSON bodies), and every routed
request becomes one ledger row.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import Response

from openparity.route.cascade import HybridRouter
from openparity.route.config import GatewayConfig, load_gateway_config
from openparity.route.endpoints import ACCESS_LOG, Gateway
from openparity.route.responses import internal_error

Endpoint = Callable[[Request], Awaitable[Response]]


def create_app(config: GatewayConfig, router: HybridRouter | None = None) -> FastAPI:
    """The gateway app. Raises GatewayConfigError when keys are required and none exist."""
    gateway = Gateway(config, router)
    app = FastAPI(
        title="openparity gateway", lifespan=gateway.lifespan, docs_url=None, redoc_url=None
    )
    app.add_exception_handler(Exception, internal_error)
    app.state.router, app.state.ledger, app.state.metrics = (
        gateway.router,
        gateway.ledger,
        gateway.metrics,
    )
    _post(app, "/v1/chat/completions", gateway.chat_completions)
    _post(app, "/v1/embeddings", gateway.embeddings)
    _post(app, "/v1/completions", gateway.completions)
    app.get("/v1/models")(gateway.list_models)
    app.get("/health")(gateway.health)
    app.get("/metrics")(gateway.prometheus)
    return app


def _post(app: FastAPI, path: str, endpoint: Endpoint) -> None:
    """Register `endpoint(request)` as a plain Starlette route: it reads the raw request
    itself, so FastAPI's per-request dependency solving (tens of µs) would buy nothing."""
    app.add_route(path, endpoint, methods=["POST"])


CONFIG_ENV = "OPENPARITY_GATEWAY_CONFIG"


def app_from_environment() -> FastAPI:
    """One worker of `serve --workers N`: the app for the config file named by
    $OPENPARITY_GATEWAY_CONFIG (uvicorn calls this in each worker process)."""
    _log_access()
    return create_app(load_gateway_config(Path(os.environ[CONFIG_ENV])))


def serve(
    app: FastAPI | None,
    *,
    host: str,
    port: int,
    workers: int = 1,
    config: Path | None = None,
    drain_s: float = 10.0,
) -> None:
    """Run the gateway with uvicorn until interrupted; one access line per request. With
    `workers` > 1, `app` is None and each worker process builds its own from `config`."""
    import uvicorn

    _log_access()
    if workers > 1:
        assert config is not None
        os.environ[CONFIG_ENV] = str(config)
        target: Any = "openparity.route.server:app_from_environment"
    else:
        target = app
    uvicorn.run(
        target,
        factory=workers > 1,
        workers=workers if workers > 1 else None,
        host=host,
        port=port,
        log_level="warning",
        access_log=False,
        proxy_headers=False,  # nothing reads the client address; it cost 50 µs per request
        timeout_graceful_shutdown=drain_s + 5,  # the app cuts its streams at drain_s
    )


def _log_access() -> None:
    if not ACCESS_LOG.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
        ACCESS_LOG.addHandler(handler)
        ACCESS_LOG.setLevel(logging.INFO)
