"""Reading code out of a model's reply (fenced blocks or a raw completion)."""

from __future__ import annotations

import re

_FENCE = re.compile(r"```[ \t]*([A-Za-z0-9_+-]*)[ \t]*\n(.*?)(?:```|\Z)", re.DOTALL)


def extract_code(response: str) -> str:
    """The Python code in a reply: the first fenced block that defines a function, else the
    first fenced block, else the reply itself (a raw completion)."""
    blocks = [
        body
        for lang, body in _FENCE.findall(response)
        if lang.lower() in ("", "python", "py", "python3")
    ]
    for body in blocks:
        if re.search(r"^\s*def ", body, re.MULTILINE):
            return body
    return blocks[0] if blocks else response
