"""The gateway's endpoints over one HybridRouter: what each does with a request, and the
bookkeeping (spend, ledger row, metrics, access line) every answer gets after it is sent."""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import os
import socket
from collections.abc import AsyncIterator

from fastapi import FastAPI, Request
from fastapi.responses import Response

from openparity.models.types import ChatRequest
from openparity.route.accounts import KeyAccount, prompt_tokens_bound
from openparity.route.admission import (
    Admission,
    asked_output_tokens,
    authorize,
    bearer,
    parse_chat,
    pinned_tier,
    read_body,
)
from openparity.route.cascade import HybridRouter
from openparity.route.config import GatewayConfig, GatewayConfigError
from openparity.route.drain import Drain
from openparity.route.keys import STORE_THREADS, KeyRing, spent_by
from openparity.route.ledger import Ledger
from openparity.route.ledger_db import describe
from openparity.route.metrics import GatewayMetrics
from openparity.route.outcome import RouteResult
from openparity.route.params import ClientRequestError
from openparity.route.responses import (
    JSON,
    client_error,
    completion_body,
    error_response,
    rejection_response,
    route_headers,
)
from openparity.route.shared import shared_state_for
from openparity.route.sse import stream_response
from openparity.route.wire_json import dumps

ACCESS_LOG = logging.getLogger("openparity.gateway.access")


class Gateway:
    """One gateway process's state (router, ledger, metrics, keys, shared state) and its
    endpoints. Raises GatewayConfigError when keys are required and none exist."""

    def __init__(self, config: GatewayConfig, router: HybridRouter | None = None) -> None:
        auth = config.auth
        keys = KeyRing(config.ledger.target, auth.keys_refresh_s) if auth.required else None
        if keys is not None and not len(keys):
            raise GatewayConfigError(
                f"the gateway requires API keys and {describe(config.ledger.target)} holds none",
                hint="create one: openparity route keys add NAME --config gateway.yaml"
                " (or set auth.required: false for a loopback-only test)",
            )
        self.config, self.keys = config, keys
        self.router = router or HybridRouter(config)
        self.ledger = Ledger(config.ledger.target, store_prompts=config.ledger.store_prompts)
        self.metrics = GatewayMetrics(self.router)
        shared = config.shared_state
        self.shared = (
            shared_state_for(shared.redis_url, config.name, shared.timeout_s) if shared else None
        )
        self.replica = f"{socket.gethostname()}:{os.getpid()}"
        self.admin_key = auth.admin_key()
        self.drain = Drain(config.drain_seconds)

    @contextlib.asynccontextmanager
    async def lifespan(self, _: FastAPI) -> AsyncIterator[None]:
        self.drain.install()
        if self.shared is not None:
            await self.shared.start(self.router)
        await self.router.warm()
        keys = self.keys
        refresher = asyncio.ensure_future(keys.keep_fresh()) if keys is not None else None
        yield
        if refresher is not None:
            refresher.cancel()
        await self.router.aclose()
        if self.shared is not None:
            await self.shared.close()
        self.ledger.close()

    # POST /v1/chat/completions, /v1/embeddings, /v1/completions

    async def chat_completions(self, request: Request) -> Response:
        admission = await self.admitted(request)
        if isinstance(admission, Response):
            return admission
        body = admission.body
        try:
            chat = parse_chat(body)
            self.router.check_fits(chat, admission.pinned)
        except ClientRequestError as exc:
            return client_error(exc)
        result = admission.result(chat, stream=bool(body.get("stream")))
        if result.stream:
            include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
            return await stream_response(
                self.router,
                result,
                include_usage,
                self.finish,
                self.all_failed,
                admission,
                self.drain,
            )
        await self.router.route(chat, result)
        if result.completion is None:
            return self.all_failed(result, admission, result.error)
        response = Response(
            dumps(completion_body(result)), headers=route_headers(result), media_type=JSON
        )
        return self.afterwards(response, result, 200, admission)

    async def embeddings(self, request: Request) -> Response:
        return await self.forward(request, "/embeddings")

    async def completions(self, request: Request) -> Response:
        return await self.forward(request, "/completions")

    async def forward(self, request: Request, endpoint: str) -> Response:
        admission = await self.admitted(request)
        if isinstance(admission, Response):
            return admission
        body = admission.body
        if body.get("stream"):
            return error_response(
                400,
                f"the gateway does not stream {endpoint}; send stream: false",
                kind="invalid_request_error",
                code="unsupported_stream",
            )
        asked = body.get("max_tokens")
        valid = isinstance(asked, int) and not isinstance(asked, bool) and asked > 0
        choices = body.get("n") if isinstance(body.get("n"), int) else 1
        stand_in = ChatRequest(
            messages=(),
            max_tokens=asked if valid else None,
            extra={"endpoint": endpoint, "n": choices},
        )
        result = admission.result(stand_in, endpoint=endpoint)
        answer = await self.router.forward(endpoint, body, result)
        if answer is None:
            return self.all_failed(result, admission, result.error)
        answer = {**answer, "model": result.answered_by, "openparity": result.summary()}
        response = Response(dumps(answer), headers=route_headers(result), media_type=JSON)
        return self.afterwards(response, result, 200, admission)

    # GET /v1/models, /health, /metrics

    async def list_models(self) -> Response:
        """The cascade under the gateway's name, then each tier (a request naming a tier's
        model goes to that tier only, without fallback)."""
        name = self.config.name
        data = [{"id": name, "object": "model", "created": 0, "owned_by": "openparity"}]
        data += [
            {
                "id": t.name,
                "object": "model",
                "created": 0,
                "owned_by": t.spec.backend,
                "openparity": {"tier": t.index},
            }
            for t in self.router.tiers
        ]
        return Response(dumps({"object": "list", "data": data}), media_type=JSON)

    async def health(self, request: Request) -> Response:
        """200 while some tier admits requests, 503 when every breaker is open; the tiers'
        details only for the admin key, when the config sets one."""
        state = self.router.health() | {
            "replica": self.replica,
            "shared_state": self.shared is not None,
        }
        status = 200 if state["status"] == "ok" else 503
        shown = state if self.is_admin(request) else {"status": state["status"]}
        return Response(dumps(shown), status, media_type=JSON)

    async def prometheus(self, request: Request) -> Response:
        if not self.is_admin(request):
            return error_response(
                401,
                "/metrics needs the gateway's admin key (Authorization: Bearer ...)",
                kind="invalid_request_error",
                code="invalid_api_key",
            )
        return Response(self.metrics.render(), media_type="text/plain; version=0.0.4")

    # admission and bookkeeping

    def is_admin(self, request: Request) -> bool:
        if self.admin_key is None:
            return True
        return hmac.compare_digest(bearer(request).encode(), self.admin_key.encode())

    async def admitted(self, request: Request) -> Admission | Response:
        """Authorize, read the body, resolve a pinned tier, then the key's rate and tokens per
        minute: the admission, or the refusal of the first step that refuses."""
        key, refusal = authorize(request, self.keys)
        if refusal is not None:
            return refusal
        raw, body, refusal = await read_body(request, self.config.max_request_bytes)
        if refusal is not None:
            return refusal
        pinned, refusal = pinned_tier(body, self.config.name, self.router)
        if refusal is not None:
            return refusal
        bound = prompt_tokens_bound(raw)
        estimate = bound + asked_output_tokens(body)
        account = None
        if key is not None:
            key_id = key.key_id
            account = KeyAccount(key, self.shared, lambda: self.spent_in_ledger(key_id))
            limited = await account.admit(estimate)
            if limited is not None:
                return rejection_response(limited)
        return Admission(account, body, pinned, bound, estimate)

    async def spent_in_ledger(self, key_id: str) -> float:
        """The key's spending from the ledger (this replica's pending rows written first),
        within ledger.read_timeout_s; TimeoutError past it."""
        loop, ledger = asyncio.get_running_loop(), self.ledger
        limit = self.config.ledger.read_timeout_s
        async with asyncio.timeout(limit):
            await loop.run_in_executor(STORE_THREADS, ledger.flush, limit)
            return await loop.run_in_executor(STORE_THREADS, spent_by, ledger.target, key_id)

    def all_failed(
        self, result: RouteResult, admission: Admission | None, message: str | None
    ) -> Response:
        """The client's error as the upstream said it (its status, never a breaker's count),
        or a 502 when every tier failed."""
        rejection = result.rejection
        if rejection is not None:
            response = rejection_response(rejection, route_headers(result))
            return self.afterwards(response, result, rejection.status, admission)
        response = error_response(
            502,
            message or "every tier failed",
            kind="upstream_error",
            code="all_tiers_failed",
            headers=route_headers(result),
        )
        return self.afterwards(response, result, 502, admission)

    def afterwards(
        self, response: Response, result: RouteResult, status: int, admission: Admission | None
    ) -> Response:
        """`response`; the request's bookkeeping runs on the event loop's next turn, once the
        response is on its way: off the client's latency, and run even when the client has
        gone away before reading it."""
        asyncio.get_running_loop().call_soon(self.finish, result, status, admission)
        return response

    def finish(self, result: RouteResult, status: int, admission: Admission | None) -> None:
        account = admission.account if admission else None
        if admission is not None and account is not None:
            used = sum(a.prompt_tokens + a.completion_tokens for a in result.attempts)
            account.return_tokens(admission.token_estimate - used)
        key = account.key if account else None
        self.ledger.record(result, status=status, key_id=key.key_id if key else None)
        self.metrics.observe(result, status)
        ACCESS_LOG.info(
            "%s %d %s model=%s attempts=%d %.3fs $%.6f key=%s%s",
            result.request_id,
            status,
            result.route,
            result.answered_by or "-",
            len(result.attempts),
            result.latency_s,
            result.cost_usd,
            key.name if key else "-",
            " stream" if result.stream else "",
        )
