"""JSON at the gateway's edge, strict in and always valid out.

In: a request body must be a JSON object of standard JSON: no NaN or Infinity (Python's json
accepts them, no API does), nested at most MAX_DEPTH levels (a body 100,000 levels deep must
be a 400, not a RecursionError). Out: every body the gateway writes is standard JSON, even when
an upstream's answer holds a lone UTF-16 surrogate or a non-finite number.
"""

from __future__ import annotations

import json
from typing import Any

from openparity.jsonsafe import finite

MAX_DEPTH = 64  # OpenAI's structured outputs allow 5 levels of schema nesting; tools a few more


class BadJson(ValueError):
    """The body is not a usable JSON object; the message says why in one line."""


def _no_constant(name: str) -> Any:
    raise BadJson(f"{name} is not JSON (send a number or null)")


def parse_body(raw: bytes) -> dict[str, Any]:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BadJson(f"not UTF-8 at byte {exc.start}") from None
    try:
        body = json.loads(text, parse_constant=_no_constant)
    except json.JSONDecodeError as exc:
        raise BadJson(f"{exc.msg} at line {exc.lineno} column {exc.colno}") from None
    except RecursionError:
        raise BadJson(f"nested deeper than {MAX_DEPTH} levels") from None
    if not isinstance(body, dict):
        raise BadJson("the body must be a JSON object")
    if not _depth_within(body, MAX_DEPTH):
        raise BadJson(f"nested deeper than {MAX_DEPTH} levels")
    return body


def _depth_within(value: Any, limit: int) -> bool:
    """Is `value` nested at most `limit` levels (containers counted)? Iterative."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        children = item.values() if isinstance(item, dict) else item
        for child in children:
            if isinstance(child, dict | list):
                if depth + 1 > limit:
                    return False
                stack.append((child, depth + 1))
    return True


def dumps(payload: Any) -> str:
    """`payload` as standard JSON text: UTF-8 characters kept, a lone surrogate escaped
    (\\udXXX), a non-finite float written as null."""
    try:
        text = json.dumps(payload, ensure_ascii=False, allow_nan=False)
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        return json.dumps(payload, ensure_ascii=True, allow_nan=False)
    except ValueError:  # NaN or Infinity from an upstream
        return dumps(finite(payload))
