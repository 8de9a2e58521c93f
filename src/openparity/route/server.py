"""`openparity serve`: the HybridRouter behind an OpenAI-compatible HTTP API (FastAPI).

POST /v1/chat/completions (streamed or not; tools, n choices, response_format and every other
field passed on), /v1/embeddings and /v1/completions (forwarded to the first tier that serves
them), GET /v1/models, /health, /metrics. Every answer
names the model that gave it and the route taken (x-openparity-model, x-openparity-route,
x-openparity-request-id headers; an `openparity` object in JSON bodies), and every routed
request becomes one ledger row.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import os
import socket
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import Response, StreamingResponse

from openparity.models.types import ChatRequest, StreamChunk
from openparity.route.accounts import KeyAccount, prompt_tokens_bound
from openparity.route.cascade import HybridRouter
from openparity.route.config import GatewayConfig, GatewayConfigError, load_gateway_config
from openparity.route.drain import Drain, StreamCut
from openparity.route.keys import STORE_THREADS, ApiKey, KeyRing, spent_by
from openparity.route.ledger import Ledger
from openparity.route.ledger_db import describe
from openparity.route.metrics import GatewayMetrics
from openparity.route.outcome import (
    AllTiersFailedError,
    Rejection,
    RouteResult,
    StreamBrokenError,
)
from openparity.route.params import ClientRequestError, check_messages, request_from_params
from openparity.route.shared import shared_state_for
from openparity.route.wire_json import BadJson, dumps, parse_body

JSON = "application/json"
Endpoint = Callable[[Request], Awaitable[Response]]
ACCESS_LOG = logging.getLogger("openparity.gateway.access")
LOG = logging.getLogger("openparity.gateway")


def error_response(
    status: int,
    message: str,
    *,
    kind: str,
    code: str | None,
    headers: dict[str, str] | None = None,
    param: str | None = None,
) -> Response:
    """An OpenAI-style error body: {"error": {"message", "type", "param", "code"}}."""
    body = {"error": {"message": message, "type": kind, "param": param, "code": code}}
    return Response(dumps(body), status, headers=headers, media_type=JSON)


def client_error(exc: ClientRequestError) -> Response:
    return error_response(
        400, exc.message, kind="invalid_request_error", code=exc.code, param=exc.param
    )


def create_app(config: GatewayConfig, router: HybridRouter | None = None) -> FastAPI:
    """The gateway app. Raises GatewayConfigError when keys are required and none exist."""
    auth = config.auth
    keys = KeyRing(config.ledger.target, auth.keys_refresh_s) if auth.required else None
    if keys is not None and not len(keys):
        raise GatewayConfigError(
            f"the gateway requires API keys and {describe(config.ledger.target)} holds none",
            hint="create one: openparity route keys add NAME --config gateway.yaml"
            " (or set auth.required: false for a loopback-only test)",
        )
    router = router or HybridRouter(config)
    ledger = Ledger(config.ledger.target, store_prompts=config.ledger.store_prompts)
    metrics = GatewayMetrics(router)
    shared = (
        shared_state_for(config.shared_state.redis_url, config.name, config.shared_state.timeout_s)
        if config.shared_state
        else None
    )
    replica = f"{socket.gethostname()}:{os.getpid()}"
    admin_key = config.auth.admin_key()

    def is_admin(request: Request) -> bool:
        if admin_key is None:
            return True
        return hmac.compare_digest(_bearer(request).encode(), admin_key.encode())

    drain = Drain(config.drain_seconds)

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        drain.install()
        if shared is not None:
            await shared.start(router)
        await router.warm()
        refresher = asyncio.ensure_future(keys.keep_fresh()) if keys is not None else None
        yield
        if refresher is not None:
            refresher.cancel()
        await router.aclose()
        if shared is not None:
            await shared.close()
        ledger.close()

    app = FastAPI(title="openparity gateway", lifespan=lifespan, docs_url=None, redoc_url=None)
    app.add_exception_handler(Exception, _internal_error)
    app.state.router, app.state.ledger, app.state.metrics = router, ledger, metrics

    def finish(result: RouteResult, status: int, admission: _Admission | None) -> None:
        account = admission.account if admission else None
        if admission is not None and account is not None:
            used = sum(a.prompt_tokens + a.completion_tokens for a in result.attempts)
            account.return_tokens(admission.token_estimate - used)
        key = account.key if account else None
        ledger.record(result, status=status, key_id=key.key_id if key else None)
        metrics.observe(result, status)
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

    async def spent_in_ledger(key_id: str) -> float:
        """The key's spending from the ledger (this replica's pending rows written first),
        within ledger.read_timeout_s; TimeoutError past it."""
        loop = asyncio.get_running_loop()
        async with asyncio.timeout(config.ledger.read_timeout_s):
            await loop.run_in_executor(STORE_THREADS, ledger.flush, config.ledger.read_timeout_s)
            return await loop.run_in_executor(STORE_THREADS, spent_by, ledger.target, key_id)

    async def admitted(request: Request) -> _Admission | Response:
        """Authorize, read the body, resolve a pinned tier, then the key's rate and tokens per
        minute: the admission, or the refusal of the first step that refuses."""
        key, refusal = _authorize(request, keys)
        if refusal is not None:
            return refusal
        raw, body, refusal = await _read_body(request, config.max_request_bytes)
        if refusal is not None:
            return refusal
        pinned, refusal = _pinned_tier(body, config.name, router)
        if refusal is not None:
            return refusal
        bound = prompt_tokens_bound(raw)
        estimate = bound + _asked_output_tokens(body)
        account = None
        if key is not None:
            key_id = key.key_id
            account = KeyAccount(key, shared, lambda: spent_in_ledger(key_id))
            limited = await account.admit(estimate)
            if limited is not None:
                return _rejection_response(limited)
        return _Admission(account, body, pinned, bound, estimate)

    def all_failed(
        result: RouteResult, admission: _Admission | None, message: str | None
    ) -> Response:
        """The client's error as the upstream said it (its status, never a breaker's count),
        or a 502 when every tier failed."""
        rejection = result.rejection
        if rejection is not None:
            response = _rejection_response(rejection, _headers(result))
            return afterwards(response, result, rejection.status, admission)
        response = error_response(
            502,
            message or "every tier failed",
            kind="upstream_error",
            code="all_tiers_failed",
            headers=_headers(result),
        )
        return afterwards(response, result, 502, admission)

    def afterwards(
        response: Response, result: RouteResult, status: int, admission: _Admission | None
    ) -> Response:
        """`response`; the request's bookkeeping (spend, ledger row, metrics, access line) runs
        on the event loop's next turn, once the response is on its way: off the client's
        latency, and run even when the client has gone away before reading it."""
        asyncio.get_running_loop().call_soon(finish, result, status, admission)
        return response

    @_post(app, "/v1/chat/completions")
    async def chat_completions(request: Request) -> Response:
        admission = await admitted(request)
        if isinstance(admission, Response):
            return admission
        body = admission.body
        try:
            chat = _parse_chat(body)
            router.check_fits(chat, admission.pinned)
        except ClientRequestError as exc:
            return client_error(exc)
        result = admission.result(chat, stream=bool(body.get("stream")))
        if result.stream:
            include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
            return await _stream(
                router, result, include_usage, finish, all_failed, admission, drain
            )
        await router.route(chat, result)
        if result.completion is None:
            return all_failed(result, admission, result.error)
        response = Response(
            dumps(_completion_body(result)), headers=_headers(result), media_type=JSON
        )
        return afterwards(response, result, 200, admission)

    async def forward(request: Request, endpoint: str) -> Response:
        admission = await admitted(request)
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
        answer = await router.forward(endpoint, body, result)
        if answer is None:
            return all_failed(result, admission, result.error)
        answer = {**answer, "model": result.answered_by, "openparity": result.summary()}
        response = Response(dumps(answer), headers=_headers(result), media_type=JSON)
        return afterwards(response, result, 200, admission)

    @_post(app, "/v1/embeddings")
    async def embeddings(request: Request) -> Response:
        return await forward(request, "/embeddings")

    @_post(app, "/v1/completions")
    async def completions(request: Request) -> Response:
        return await forward(request, "/completions")

    @app.get("/v1/models")
    async def list_models() -> Response:
        """The cascade under the gateway's name, then each tier (a request naming a tier's
        model goes to that tier only, without fallback)."""
        data = [{"id": config.name, "object": "model", "created": 0, "owned_by": "openparity"}]
        data += [
            {
                "id": t.name,
                "object": "model",
                "created": 0,
                "owned_by": t.spec.backend,
                "openparity": {"tier": t.index},
            }
            for t in router.tiers
        ]
        return Response(dumps({"object": "list", "data": data}), media_type=JSON)

    @app.get("/health")
    async def health(request: Request) -> Response:
        """200 while some tier admits requests, 503 when every breaker is open; the tiers'
        details only for the admin key, when the config sets one."""
        state = router.health() | {"replica": replica, "shared_state": shared is not None}
        status = 200 if state["status"] == "ok" else 503
        shown = state if is_admin(request) else {"status": state["status"]}
        return Response(dumps(shown), status, media_type=JSON)

    @app.get("/metrics")
    async def prometheus(request: Request) -> Response:
        if not is_admin(request):
            return error_response(
                401,
                "/metrics needs the gateway's admin key (Authorization: Bearer ...)",
                kind="invalid_request_error",
                code="invalid_api_key",
            )
        return Response(metrics.render(), media_type="text/plain; version=0.0.4")

    return app


async def _internal_error(request: Request, exc: Exception) -> Response:
    """A bug of the gateway's own: an OpenAI-style 500 (the traceback goes to the log only)."""
    LOG.error("internal error on %s %s", request.method, request.url.path, exc_info=exc)
    return error_response(
        500,
        "internal error in the gateway (its log has the details)",
        kind="server_error",
        code="internal_error",
    )


def _post(app: FastAPI, path: str) -> Callable[[Endpoint], Endpoint]:
    """Register `endpoint(request)` as a plain Starlette route: it reads the raw request
    itself, so FastAPI's per-request dependency solving (tens of µs) would buy nothing."""

    def register(endpoint: Endpoint) -> Endpoint:
        app.add_route(path, endpoint, methods=["POST"])
        return endpoint

    return register


@dataclass
class _Admission:
    """A request let in: its key's account (None without auth), body, pinned tier and token
    bounds."""

    account: KeyAccount | None
    body: dict[str, Any]
    pinned: int | None
    prompt_bound: int
    token_estimate: int

    def result(self, request: ChatRequest, **fields: Any) -> RouteResult:
        return RouteResult(
            request,
            pinned_tier=self.pinned,
            spending=self.account,
            prompt_tokens_bound=self.prompt_bound,
            **fields,
        )


def _authorize(request: Request, keys: KeyRing | None) -> tuple[ApiKey | None, Response | None]:
    """The request's key, or the 401 (missing, unknown or revoked)."""
    if keys is None:
        return None, None
    secret = _bearer(request)
    key = keys.find(secret) if secret else None
    if key is None:
        return None, error_response(
            401,
            "missing, unknown or revoked gateway API key (Authorization: Bearer op-...)",
            kind="invalid_request_error",
            code="invalid_api_key",
        )
    return key, None


def _asked_output_tokens(body: dict[str, Any]) -> int:
    """The output tokens a body asks for at most (0 when it does not say)."""
    asked = body.get("max_completion_tokens", body.get("max_tokens"))
    choices = body.get("n")
    if isinstance(asked, bool) or not isinstance(asked, int) or asked < 1:
        return 0
    return asked * (choices if isinstance(choices, int) and 1 <= choices <= 128 else 1)


def _rejection_response(rejection: Rejection, headers: dict[str, str] | None = None) -> Response:
    headers = dict(headers or {})
    wait = rejection.retry_after_s
    if wait:
        headers |= {"retry-after": f"{max(1, round(wait))}", "retry-after-ms": f"{wait * 1000:.0f}"}
    return Response(
        dumps({"error": rejection.error}), rejection.status, headers=headers, media_type=JSON
    )


def _bearer(request: Request) -> str:
    header = request.headers.get("authorization", "")
    return header[7:].strip() if header[:7].lower() == "bearer " else ""


async def _read_body(request: Request, limit: int) -> tuple[bytes, dict[str, Any], Response | None]:
    def too_big() -> Response:
        return error_response(
            413,
            f"request body over the gateway's limit of {limit} bytes",
            kind="invalid_request_error",
            code="request_too_large",
        )

    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        return b"", {}, too_big()
    parts: list[bytes] = []
    size = 0
    async for part in request.stream():
        parts.append(part)
        size += len(part)
        if size > limit:
            return b"", {}, too_big()
    raw = b"".join(parts)
    try:
        return raw, parse_body(raw), None
    except BadJson as exc:
        return (
            raw,
            {},
            error_response(
                400,
                f"the request body is not usable JSON: {exc}",
                kind="invalid_request_error",
                code="invalid_json",
            ),
        )


def _pinned_tier(
    body: dict[str, Any], name: str, router: HybridRouter
) -> tuple[int | None, Response | None]:
    """None for the cascade (the gateway's name, or no model), a tier's index when the request
    names that tier's model; a 404 for any other name."""
    model = body.get("model")
    if model in (name, None):
        return None, None
    tier = router.tier_named(model) if isinstance(model, str) else None
    if tier is None:
        return None, error_response(
            404,
            f"model {model!r} is not served here; this gateway serves {name!r}"
            " (GET /v1/models lists its tiers too)",
            kind="invalid_request_error",
            code="model_not_found",
        )
    return tier, None


def _parse_chat(body: dict[str, Any]) -> Any:
    """The chat request in `body`; raises ClientRequestError for what the API would refuse."""
    messages = body.get("messages")
    check_messages(messages)
    return request_from_params(messages, {k: v for k, v in body.items() if k != "messages"})


def _headers(result: RouteResult) -> dict[str, str]:
    headers = {"x-openparity-request-id": result.request_id, "x-openparity-route": result.route}
    if result.answered_by:
        headers["x-openparity-model"] = result.answered_by
    reasons = result.reasons()
    if reasons:
        headers["x-openparity-fallback-reasons"] = reasons.encode("ascii", "replace").decode()
    return headers


def _completion_body(result: RouteResult) -> dict[str, Any]:
    """The answer as a chat.completion: the upstream's own body when it sent one (tool calls,
    n choices, usage details and every unknown field intact), built from the text otherwise."""
    completion = result.completion
    assert completion is not None
    ours = {
        "id": "chatcmpl-" + result.request_id,
        "object": "chat.completion",
        "created": int(result.created),
        "model": completion.model,
    }
    if completion.raw is not None:
        body = {**completion.raw, **ours, "openparity": result.summary()}
        if not result.request.logprobs:  # asked for by a check, not by the client
            body["choices"] = [{**c, "logprobs": None} for c in body.get("choices") or ()]
        return body
    choice: dict[str, Any] = {
        "index": 0,
        "message": {"role": "assistant", "content": completion.text},
        "finish_reason": completion.finish_reason,
        "logprobs": None,
    }
    if completion.logprobs is not None and result.request.logprobs:
        choice["logprobs"] = {
            "content": [
                {
                    "token": t.token,
                    "logprob": t.logprob,
                    "top_logprobs": [{"token": a, "logprob": v} for a, v in t.top],
                }
                for t in completion.logprobs
            ]
        }
    return ours | {"choices": [choice], "usage": _usage(result), "openparity": result.summary()}


def _usage(result: RouteResult) -> dict[str, int]:
    c = result.completion
    prompt, completion = (c.prompt_tokens, c.completion_tokens) if c else (0, 0)
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }


async def _stream(
    router: HybridRouter,
    result: RouteResult,
    include_usage: bool,
    finish: Any,
    all_failed: Any,
    admission: Any,
    drain: Drain,
) -> Response:
    """Wait for the pre-commit point (so the headers can name the answering model), then send
    server-sent events. A failure after that is sent as an SSE error event, never a silent cut."""
    pieces = drain.until_cut(router.stream(result.request, result))
    try:
        first = await anext(pieces)
    except AllTiersFailedError as exc:
        return all_failed(result, admission, exc.message)
    except StopAsyncIteration:  # cannot happen: the router either yields or raises
        return all_failed(result, admission, "no answer")
    except StreamCut:
        result.error = "cut by shutdown"
        response = error_response(
            503,
            "the gateway is shutting down; retry on another replica",
            kind="server_error",
            code="shutting_down",
            headers=_headers(result),
        )
        asyncio.get_running_loop().call_soon(finish, result, 503, admission)
        return response
    base = {
        "id": "chatcmpl-" + result.request_id,
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": result.attempts[-1].model,
    }
    sse = _SseWriter(base, include_usage, logprobs=result.request.logprobs)

    async def events() -> AsyncIterator[bytes]:
        status = 200
        try:
            for event in sse.chunk(first):
                yield event
            try:
                async for chunk in pieces:
                    for event in sse.chunk(chunk):
                        yield event
            except StreamBrokenError as exc:
                status = 502
                error = {"message": exc.message, "type": "upstream_error", "code": "stream_broken"}
                yield _data({"error": error})
                return
            except StreamCut:
                status, result.error = 503, "cut by shutdown"
                message = (
                    f"the gateway is shutting down: this stream was cut after its"
                    f" {drain.seconds:g}s drain"
                )
                yield _data(
                    {"error": {"message": message, "type": "server_error", "code": "shutting_down"}}
                )
                return
            completion = result.completion
            for event in sse.end(completion.finish_reason if completion else "stop", result):
                yield event
        except BaseException:
            status = 499  # the client went away mid-stream
            raise
        finally:
            await pieces.aclose()
            finish(result, status, admission)

    return StreamingResponse(events(), media_type="text/event-stream", headers=_headers(result))


class _SseWriter:
    """The server-sent events of one streamed answer. An upstream's own events are passed on
    with the gateway's id and model (tool-call deltas and unknown fields intact); text from
    other backends becomes content deltas. The finish and usage events are added only when the
    upstream's were not passed on; usage only when the client asked for it."""

    def __init__(self, base: dict[str, Any], include_usage: bool, *, logprobs: bool) -> None:
        self.base, self.include_usage, self.logprobs = base, include_usage, logprobs
        self.started = self.finished = self.usage_sent = False

    def chunk(self, chunk: StreamChunk) -> list[bytes]:
        if chunk.event is not None:
            return self._forward(chunk.event)
        if not chunk.text:
            return []
        delta = {"content": chunk.text} | ({} if self.started else {"role": "assistant"})
        self.started = True
        return [self._choice(delta)]

    def end(self, finish_reason: str, result: RouteResult) -> list[bytes]:
        events = [] if self.finished else [self._choice({}, finish_reason)]
        if self.include_usage and not self.usage_sent:
            events.append(_data(self.base | {"choices": [], "usage": _usage(result)}))
        return [*events, b"data: [DONE]\n\n"]

    def _forward(self, event: Mapping[str, Any]) -> list[bytes]:
        choices = event.get("choices") or []
        if not choices and event.get("usage") is not None:
            if not self.include_usage:  # the gateway asked for it to cost the answer
                return []
            self.usage_sent = True
        if any(c.get("finish_reason") for c in choices):
            self.finished = True
        if not self.logprobs:
            choices = [{**c, "logprobs": None} if c.get("logprobs") else c for c in choices]
        self.started = True
        return [_data({**event, **self.base, "choices": choices})]

    def _choice(self, delta: dict[str, Any], finish_reason: str | None = None) -> bytes:
        choice = {"index": 0, "delta": delta, "finish_reason": finish_reason, "logprobs": None}
        return _data(self.base | {"choices": [choice]})


def _data(payload: dict[str, Any]) -> bytes:
    return b"data: " + dumps(payload).encode() + b"\n\n"


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
