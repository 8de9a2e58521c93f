"""Letting a request in: its API key, its body (size-limited, strict JSON), the tier it pins, and
the token bounds its key's limits are charged with."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from fastapi import Request
from fastapi.responses import Response

from openparity.models.types import ChatRequest
from openparity.route.accounts import KeyAccount
from openparity.route.keys import ApiKey, KeyRing
from openparity.route.outcome import RouteResult
from openparity.route.params import check_messages, request_from_params
from openparity.route.responses import error_response
from openparity.route.wire_json import BadJson, parse_body

if TYPE_CHECKING:
    from openparity.route.cascade import HybridRouter


@dataclass
class Admission:
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


def authorize(request: Request, keys: KeyRing | None) -> tuple[ApiKey | None, Response | None]:
    """The request's key, or the 401 (missing, unknown or revoked)."""
    if keys is None:
        return None, None
    secret = bearer(request)
    key = keys.find(secret) if secret else None
    if key is None:
        return None, error_response(
            401,
            "missing, unknown or revoked gateway API key (Authorization: Bearer op-...)",
            kind="invalid_request_error",
            code="invalid_api_key",
        )
    return key, None


def asked_output_tokens(body: dict[str, Any]) -> int:
    """The output tokens a body asks for at most (0 when it does not say)."""
    asked = body.get("max_completion_tokens", body.get("max_tokens"))
    choices = body.get("n")
    if isinstance(asked, bool) or not isinstance(asked, int) or asked < 1:
        return 0
    return asked * (choices if isinstance(choices, int) and 1 <= choices <= 128 else 1)


def bearer(request: Request) -> str:
    header = request.headers.get("authorization", "")
    return header[7:].strip() if header[:7].lower() == "bearer " else ""


async def read_body(request: Request, limit: int) -> tuple[bytes, dict[str, Any], Response | None]:
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


def pinned_tier(
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


def parse_chat(body: dict[str, Any]) -> Any:
    """The chat request in `body`; raises ClientRequestError for what the API would refuse."""
    messages = body.get("messages")
    check_messages(messages)
    return request_from_params(messages, {k: v for k, v in body.items() if k != "messages"})
