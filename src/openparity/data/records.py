"""Training records as JSONL lines: chat (`messages`), (`prompt`, `response`) or `text`.
Parsing never drops a line silently: a line that is not a usable record comes back as
Malformed with its file and line number, for the quarantine file."""

from __future__ import annotations

import functools
import hashlib
import json
import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass
class Doc:
    """One input record on its way through the pipeline; `text` is what the steps judge."""

    source: str
    line: int
    id: str
    record: dict[str, Any]
    text: str


@dataclass(frozen=True)
class Malformed:
    source: str
    line: int
    error: str
    raw: str


def parse_line(source: str, number: int, raw: str) -> Doc | Malformed:
    try:
        record = json.loads(raw)
    except json.JSONDecodeError as exc:
        return Malformed(source, number, f"not JSON ({exc.msg} at column {exc.colno})", raw[:2000])
    if not isinstance(record, dict):
        return Malformed(source, number, "not a JSON object", raw[:2000])
    text = record_text(record)
    if text is None:
        return Malformed(
            source, number, "no text: needs messages, prompt + response, or text", raw[:2000]
        )
    record_id = str(record.get("id") or f"{Path(source).name}:{number}")
    return Doc(source, number, record_id, record, text)


def record_text(record: dict[str, Any]) -> str | None:
    """All the words a record carries, in order (None when it has none)."""
    messages = record.get("messages")
    if isinstance(messages, list) and messages:
        parts = []
        for message in messages:
            if not isinstance(message, dict):
                return None
            content = message.get("content")
            if isinstance(content, str):
                parts.append(content)
            elif isinstance(content, list):
                parts += [p.get("text", "") for p in content if isinstance(p, dict)]
        return "\n".join(parts) if any(p.strip() for p in parts) else None
    if isinstance(record.get("prompt"), str) and isinstance(record.get("response"), str):
        return f"{record['prompt']}\n{record['response']}"
    if isinstance(record.get("text"), str) and record["text"].strip():
        return record["text"]
    return None


def map_text(record: dict[str, Any], change: Callable[[str], str]) -> dict[str, Any]:
    """A copy of `record` with `change` applied to every text it carries."""
    out = dict(record)
    if isinstance(out.get("messages"), list):
        messages = []
        for message in out["messages"]:
            message = dict(message)
            content = message.get("content")
            if isinstance(content, str):
                message["content"] = change(content)
            elif isinstance(content, list):
                message["content"] = [
                    {**p, "text": change(p["text"])} if isinstance(p, dict) and "text" in p else p
                    for p in content
                ]
            messages.append(message)
        out["messages"] = messages
    for key in ("prompt", "response", "chosen", "rejected", "text"):
        if isinstance(out.get(key), str):
            out[key] = change(out[key])
    return out


_SPACES = re.compile(r"\s+")
_WORDS = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af]|[^\W_]+")


@functools.lru_cache(maxsize=16)  # each step of the pipeline asks again for the same text
def normalize(text: str) -> str:
    """NFKC, case-folded, whitespace collapsed: the form duplicates are compared in."""
    return _SPACES.sub(" ", unicodedata.normalize("NFKC", text).casefold()).strip()


@functools.lru_cache(maxsize=16)
def words(text: str) -> tuple[str, ...]:
    """Word tokens of normalised text; each CJK character is a word of its own."""
    return tuple(_WORDS.findall(normalize(text)))


def fingerprint(text: str) -> str:
    return hashlib.blake2b(normalize(text).encode("utf-8"), digest_size=16).hexdigest()
