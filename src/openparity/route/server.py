"""`openparity serve`: the HybridRouter behind an OpenAI-compatible HTTP API (FastAPI).

POST /v1/chat/completions (streamed or not), GET /v1/models, /health, /metrics. Every answer
names the model that gave it and the route taken (x-openparity-model, x-openparity-route,
x-openparity-request-id headers; an `openparity` object in JSON bodies), and every routed
request becomes one ledger row.
"""

from __future__ import annotations

import contextlib
import json
import logging
import sys
import time
from collections.abc import AsyncIterator
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import Response, StreamingResponse

from openparity.route.cascade import HybridRouter, request_from_params
from openparity.route.config import GatewayConfig, GatewayConfigError
from openparity.route.keys import ApiKey, KeyRing
from openparity.route.ledger import Ledger
from openparity.route.metrics import GatewayMetrics
from openparity.route.outcome import AllTiersFailedError, RouteResult, StreamBrokenError

JSON = "application/json"
ACCESS_LOG = logging.getLogger("openparity.gateway.access")


def error_response(
    status: int, message: str, *, kind: str, code: str, headers: dict[str, str] | None = None
) -> Response:
    """An OpenAI-style error body: {"error": {"message", "type", "param", "code"}}."""
    body = {"error": {"message": message, "type": kind, "param": None, "code": code}}
    return Response(json.dumps(body, ensure_ascii=False), status, headers=headers, media_type=JSON)


def create_app(config: GatewayConfig, router: HybridRouter | None = None) -> FastAPI:
    """The gateway app. Raises GatewayConfigError when keys are required and none exist."""
    keys = KeyRing(config.ledger.path) if config.auth.required else None
    if keys is not None and not len(keys):
        raise GatewayConfigError(
            f"the gateway requires API keys and {config.ledger.path} holds none",
            hint="create one: openparity route keys add NAME --config gateway.yaml"
            " (or set auth.required: false for a loopback-only test)",
        )
    router = router or HybridRouter(config)
    ledger = Ledger(config.ledger.path, store_prompts=config.ledger.store_prompts)
    metrics = GatewayMetrics(router)

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await router.warm()
        yield
        await router.aclose()
        ledger.close()

    app = FastAPI(title="openparity gateway", lifespan=lifespan, docs_url=None, redoc_url=None)
    app.state.router, app.state.ledger, app.state.metrics = router, ledger, metrics

    def finish(result: RouteResult, status: int, key: ApiKey | None) -> None:
        if key is not None:
            key.spent_usd += result.cost_usd
        ledger.record(result, status=status, key_id=key.key_id if key else None)
        metrics.observe(result, status)
        ACCESS_LOG.info(
            "%s %d %s model=%s attempts=%d %.3fs $%.6f key=%s%s",
            result.request_id, status, result.route, result.answered_by or "-",
            len(result.attempts), result.latency_s, result.cost_usd,
            key.name if key else "-", " stream" if result.stream else "",
        )  # fmt: skip

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request) -> Response:
        key, refusal = _authorize(request, keys)
        if refusal is not None:
            return refusal
        body, refusal = await _read_body(request, config.max_request_bytes)
        if refusal is not None:
            return refusal
        chat, refusal = _parse_chat(body, config.name)
        if refusal is not None:
            return refusal
        result = RouteResult(chat, stream=bool(body.get("stream")))
        if result.stream:
            include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
            return await _stream(router, result, include_usage, finish, key)
        await router.route(chat, result)
        if result.completion is None:
            finish(result, 502, key)
            return error_response(
                502, result.error or "every tier failed", kind="upstream_error",
                code="all_tiers_failed", headers=_headers(result),
            )  # fmt: skip
        finish(result, 200, key)
        return Response(
            json.dumps(_completion_body(result), ensure_ascii=False),
            headers=_headers(result),
            media_type=JSON,
        )

    @app.get("/v1/models")
    async def list_models() -> Response:
        data = [{"id": config.name, "object": "model", "created": 0, "owned_by": "openparity"}]
        return Response(json.dumps({"object": "list", "data": data}), media_type=JSON)

    @app.get("/health")
    async def health() -> Response:
        """200 while some tier admits requests, 503 when every breaker is open."""
        state = router.health()
        status = 200 if state["status"] == "ok" else 503
        return Response(json.dumps(state), status, media_type=JSON)

    @app.get("/metrics")
    async def prometheus() -> Response:
        return Response(metrics.render(), media_type="text/plain; version=0.0.4")

    return app


def _authorize(request: Request, keys: KeyRing | None) -> tuple[ApiKey | None, Response | None]:
    if keys is None:
        return None, None
    header = request.headers.get("authorization", "")
    secret = header[7:].strip() if header[:7].lower() == "bearer " else ""
    key = keys.find(secret) if secret else None
    if key is None:
        return None, error_response(
            401, "missing or unknown gateway API key (Authorization: Bearer op-...)",
            kind="invalid_request_error", code="invalid_api_key",
        )  # fmt: skip
    if key.over_budget:
        return key, error_response(
            429, f"key {key.name} has spent its budget of ${key.budget_usd:g}",
            kind="insufficient_quota", code="insufficient_quota",
        )  # fmt: skip
    wait = key.take()
    if wait:
        retry = {"retry-after": f"{max(1, round(wait))}", "retry-after-ms": f"{wait * 1000:.0f}"}
        return key, error_response(
            429, f"key {key.name} is over its rate limit of {key.rate_per_s:g}/s",
            kind="rate_limit_error", code="rate_limit_exceeded", headers=retry,
        )  # fmt: skip
    return key, None


async def _read_body(request: Request, limit: int) -> tuple[dict[str, Any], Response | None]:
    too_big = error_response(
        413, f"request body over the gateway's limit of {limit} bytes",
        kind="invalid_request_error", code="request_too_large",
    )  # fmt: skip
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        return {}, too_big
    raw = b""
    async for part in request.stream():
        raw += part
        if len(raw) > limit:
            return {}, too_big
    try:
        body = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        return {}, error_response(
            400, f"the request body is not JSON ({exc})",
            kind="invalid_request_error", code="invalid_json",
        )  # fmt: skip
    if not isinstance(body, dict):
        return {}, error_response(
            400, "the request body must be a JSON object",
            kind="invalid_request_error", code="invalid_json",
        )  # fmt: skip
    return body, None


def _parse_chat(body: dict[str, Any], name: str) -> tuple[Any, Response | None]:
    def bad(message: str, code: str = "invalid_request") -> tuple[None, Response]:
        return None, error_response(400, message, kind="invalid_request_error", code=code)

    if body.get("model") not in (name, None):
        return None, error_response(
            404, f"model {body.get('model')!r} is not served here; this gateway serves {name!r}",
            kind="invalid_request_error", code="model_not_found",
        )  # fmt: skip
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        return bad("`messages` must be a non-empty list")
    if not all(isinstance(m, dict) and "role" in m for m in messages):
        return bad("each message needs a `role` (and `content`)")
    if body.get("n", 1) != 1:
        return bad("the gateway returns one choice per request (n=1)", "unsupported_n")
    params = {k: v for k, v in body.items() if k != "messages"}
    try:
        return request_from_params(messages, params), None
    except (TypeError, ValueError) as exc:
        return bad(f"invalid parameters ({exc})")


def _headers(result: RouteResult) -> dict[str, str]:
    headers = {"x-openparity-request-id": result.request_id, "x-openparity-route": result.route}
    if result.answered_by:
        headers["x-openparity-model"] = result.answered_by
    reasons = result.reasons()
    if reasons:
        headers["x-openparity-fallback-reasons"] = reasons.encode("ascii", "replace").decode()
    return headers


def _completion_body(result: RouteResult) -> dict[str, Any]:
    completion = result.completion
    assert completion is not None
    choice: dict[str, Any] = {
        "index": 0,
        "message": {"role": "assistant", "content": completion.text},
        "finish_reason": completion.finish_reason,
        "logprobs": None,
    }
    if completion.logprobs is not None and result.request.logprobs:
        choice["logprobs"] = {
            "content": [
                {"token": t.token, "logprob": t.logprob,
                 "top_logprobs": [{"token": a, "logprob": v} for a, v in t.top]}
                for t in completion.logprobs
            ]
        }  # fmt: skip
    return {
        "id": "chatcmpl-" + result.request_id,
        "object": "chat.completion",
        "created": int(result.created),
        "model": completion.model,
        "choices": [choice],
        "usage": _usage(result),
        "openparity": result.summary(),
    }


def _usage(result: RouteResult) -> dict[str, int]:
    c = result.completion
    prompt, completion = (c.prompt_tokens, c.completion_tokens) if c else (0, 0)
    return {"prompt_tokens": prompt, "completion_tokens": completion,
            "total_tokens": prompt + completion}  # fmt: skip


async def _stream(
    router: HybridRouter, result: RouteResult, include_usage: bool, finish: Any, key: Any
) -> Response:
    """Wait for the pre-commit point (so the headers can name the answering model), then send
    server-sent events. A failure after that is sent as an SSE error event, never a silent cut."""
    pieces = router.stream(result.request, result)
    try:
        first = await anext(pieces)
    except AllTiersFailedError as exc:
        finish(result, 502, key)
        return error_response(
            502, exc.message, kind="upstream_error", code="all_tiers_failed",
            headers=_headers(result),
        )  # fmt: skip
    except StopAsyncIteration:  # cannot happen: the router either yields or raises
        finish(result, 502, key)
        return error_response(502, "no answer", kind="upstream_error", code="all_tiers_failed")
    base = {"id": "chatcmpl-" + result.request_id, "object": "chat.completion.chunk",
            "created": int(time.time()), "model": result.attempts[-1].model}  # fmt: skip

    def event(delta: dict[str, Any], finish_reason: str | None = None) -> bytes:
        choice = {"index": 0, "delta": delta, "finish_reason": finish_reason, "logprobs": None}
        return (
            b"data: "
            + json.dumps(base | {"choices": [choice]}, ensure_ascii=False).encode()
            + b"\n\n"
        )

    async def events() -> AsyncIterator[bytes]:
        status = 200
        try:
            yield event({"role": "assistant", "content": first})
            try:
                async for piece in pieces:
                    yield event({"content": piece})
            except StreamBrokenError as exc:
                status = 502
                error = {"message": exc.message, "type": "upstream_error", "code": "stream_broken"}
                yield (
                    b"data: " + json.dumps({"error": error}, ensure_ascii=False).encode() + b"\n\n"
                )
                return
            completion = result.completion
            yield event({}, completion.finish_reason if completion else "stop")
            if include_usage:
                usage = base | {"choices": [], "usage": _usage(result)}
                yield b"data: " + json.dumps(usage).encode() + b"\n\n"
            yield b"data: [DONE]\n\n"
        except BaseException:
            status = 499  # the client went away mid-stream
            raise
        finally:
            await pieces.aclose()
            finish(result, status, key)

    return StreamingResponse(events(), media_type="text/event-stream", headers=_headers(result))


def serve(app: FastAPI, *, host: str, port: int) -> None:
    """Run the gateway app with uvicorn until interrupted; one access line per request."""
    import uvicorn

    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
    ACCESS_LOG.addHandler(handler)
    ACCESS_LOG.setLevel(logging.INFO)
    uvicorn.run(
        app,
        host=host,
        port=port,
        log_level="warning",
        access_log=False,
        timeout_graceful_shutdown=10,
    )
