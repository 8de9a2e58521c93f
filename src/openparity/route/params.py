"""A client's chat request as the gateway takes it: OpenAI-style parameters checked the way the
API checks them (a 400 the gateway can give itself, before any upstream is paid), and turned
into a ChatRequest that carries exactly what the client sent: a parameter the client left out
stays None, so an upstream applies its own default instead of one the gateway made up."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from openparity.errors import OpenparityError
from openparity.models.types import ChatRequest, Message

MAX_CHOICES = 128


class ClientRequestError(OpenparityError):
    """The request is malformed: the client's error (HTTP 400), never an upstream's."""

    def __init__(self, message: str, *, param: str | None = None, code: str = "invalid_value"):
        super().__init__(message)
        self.param, self.code = param, code


def _number(params: dict[str, Any], name: str, low: float, high: float) -> float | None:
    value = params.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ClientRequestError(f"`{name}` must be a finite number", param=name)
    if not low <= value <= high:
        raise ClientRequestError(f"`{name}` must be from {low:g} to {high:g}", param=name)
    return float(value)


def _integer(params: dict[str, Any], name: str, low: int, high: int | None = None) -> int | None:
    value = params.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise ClientRequestError(f"`{name}` must be an integer", param=name)
    if value < low or (high is not None and value > high):
        bound = f"from {low} to {high}" if high is not None else f"at least {low}"
        raise ClientRequestError(f"`{name}` must be {bound} (got {value})", param=name)
    return value


def _stop(params: dict[str, Any]) -> list[str]:
    stop = params.get("stop")
    if stop is None:
        return []
    stops = [stop] if isinstance(stop, str) else stop
    if not isinstance(stops, list) or not all(isinstance(s, str) and s for s in stops):
        raise ClientRequestError(
            "`stop` must be a non-empty string or a list of them", param="stop"
        )
    return stops


def _object_or_none(params: dict[str, Any], name: str) -> dict[str, Any] | None:
    value = params.get(name)
    if value is not None and not isinstance(value, dict):
        raise ClientRequestError(f"`{name}` must be an object", param=name)
    return value


def _check_functions(params: dict[str, Any]) -> None:
    """`tools` (and legacy `functions`): lists of named functions with object parameters."""
    for name in ("tools", "functions"):
        entries = params.get(name)
        if entries is None:
            continue
        if not isinstance(entries, list):
            raise ClientRequestError(f"`{name}` must be a list", param=name)
        for index, entry in enumerate(entries):
            where = f"{name}[{index}]"
            function = (
                entry.get("function") if name == "tools" and isinstance(entry, dict) else entry
            )
            if not isinstance(function, dict) or not isinstance(function.get("name"), str):
                raise ClientRequestError(
                    f"`{where}` needs a function with a string name", param=where
                )
            if not isinstance(function.get("parameters", {}), dict):
                raise ClientRequestError(
                    f"`{where}` parameters must be a JSON schema object", param=where
                )
    choice = params.get("tool_choice")
    if choice is not None and not (
        choice in ("none", "auto", "required")
        or (isinstance(choice, dict) and isinstance(choice.get("function", {}), dict))
    ):
        raise ClientRequestError(
            '`tool_choice` must be "none", "auto", "required" or {"type": "function", ...}',
            param="tool_choice",
        )


def _check_response_format(params: dict[str, Any]) -> None:
    fmt = _object_or_none(params, "response_format")
    if fmt is None:
        return
    kind = fmt.get("type")
    if kind not in ("text", "json_object", "json_schema"):
        raise ClientRequestError(
            "`response_format.type` must be text, json_object or json_schema",
            param="response_format",
        )
    if kind == "json_schema":
        spec = fmt.get("json_schema")
        if not isinstance(spec, dict) or not isinstance(spec.get("schema", {}), dict):
            raise ClientRequestError(
                "`response_format.json_schema` must be an object whose `schema` is an object",
                param="response_format",
            )


def check_messages(messages: Any) -> None:
    if not isinstance(messages, list) or not messages:
        raise ClientRequestError("`messages` must be a non-empty list", param="messages")
    for index, message in enumerate(messages):
        if not isinstance(message, dict) or not isinstance(message.get("role"), str):
            raise ClientRequestError(
                f"messages[{index}] needs a string `role` (and `content`)",
                param=f"messages[{index}]",
            )


def request_from_params(messages: Sequence[Message], params: dict[str, Any]) -> ChatRequest:
    """A ChatRequest from OpenAI-style keyword parameters (unknown ones travel in `extra`).
    Raises ClientRequestError for a value the API would refuse."""
    extra = dict(params)
    if "max_completion_tokens" in extra:
        extra.setdefault("max_tokens", extra.pop("max_completion_tokens"))
    _integer(extra, "n", 1, MAX_CHOICES)
    _number(extra, "presence_penalty", -2.0, 2.0)
    _number(extra, "frequency_penalty", -2.0, 2.0)
    _object_or_none(extra, "stream_options")
    _object_or_none(extra, "logit_bias")
    _check_functions(extra)
    _check_response_format(extra)
    logprobs = extra.pop("logprobs", None)
    if logprobs is not None and not isinstance(logprobs, bool):
        raise ClientRequestError("`logprobs` must be true or false", param="logprobs")
    seed = extra.pop("seed", None)
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise ClientRequestError("`seed` must be an integer", param="seed")
    known = {
        "max_tokens": _integer(extra, "max_tokens", 1),
        "temperature": _number(extra, "temperature", 0.0, 2.0),
        "top_p": _number(extra, "top_p", 0.0, 1.0),
        "stop": _stop(extra),
        "top_logprobs": _integer(extra, "top_logprobs", 0, 20) or 0,
    }
    for name in (*known, "model", "stream", "stream_options"):
        extra.pop(name, None)
    return ChatRequest(
        messages=list(messages), seed=seed, logprobs=bool(logprobs), extra=extra, **known
    )
