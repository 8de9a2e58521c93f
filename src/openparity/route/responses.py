"""The gateway's HTTP answers: OpenAI-style errors, the chat.completion body, and the headers that
name the model and route of every answer."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import Request
from fastapi.responses import Response

from openparity.route.outcome import Rejection, RouteResult
from openparity.route.params import ClientRequestError
from openparity.route.wire_json import dumps

JSON = "application/json"
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


async def internal_error(request: Request, exc: Exception) -> Response:
    """A bug of the gateway's own: an OpenAI-style 500 (the traceback goes to the log only)."""
    LOG.error("internal error on %s %s", request.method, request.url.path, exc_info=exc)
    return error_response(
        500,
        "internal error in the gateway (its log has the details)",
        kind="server_error",
        code="internal_error",
    )


def rejection_response(rejection: Rejection, headers: dict[str, str] | None = None) -> Response:
    headers = dict(headers or {})
    wait = rejection.retry_after_s
    if wait:
        headers |= {"retry-after": f"{max(1, round(wait))}", "retry-after-ms": f"{wait * 1000:.0f}"}
    return Response(
        dumps({"error": rejection.error}), rejection.status, headers=headers, media_type=JSON
    )


def route_headers(result: RouteResult) -> dict[str, str]:
    headers = {"x-openparity-request-id": result.request_id, "x-openparity-route": result.route}
    if result.answered_by:
        headers["x-openparity-model"] = result.answered_by
    reasons = result.reasons()
    if reasons:
        headers["x-openparity-fallback-reasons"] = reasons.encode("ascii", "replace").decode()
    return headers


def completion_body(result: RouteResult) -> dict[str, Any]:
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
    return ours | {"choices": [choice], "usage": usage(result), "openparity": result.summary()}


def usage(result: RouteResult) -> dict[str, int]:
    c = result.completion
    prompt, completion = (c.prompt_tokens, c.completion_tokens) if c else (0, 0)
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }
