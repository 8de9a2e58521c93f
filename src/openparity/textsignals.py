"""Signals in text that both the gateway's checks and the data filters read: refusal phrases
(English and Chinese) and the writing script of a text (Han, Kana, Hangul, Cyrillic...)."""

from __future__ import annotations

import re
from collections import Counter

REFUSALS = (
    r"\bI(?:'m| am) (?:sorry|afraid),? (?:but )?I (?:can(?:no|')t|cannot|am unable|won't)",
    r"\bI (?:can(?:no|')t|cannot|won't|am unable to) (?:help|assist|comply|provide|do that)",
    r"\bas an AI(?: language model)?\b",
    r"(?:抱歉|对不起)[，,]?\s*我(?:无法|不能|没法)",
    r"我(?:无法|不能)(?:回答|提供|协助|帮助)",
    r"作为(?:一个)?(?:AI|人工智能)",
)
REFUSAL = re.compile("|".join(f"(?:{p})" for p in REFUSALS), re.IGNORECASE)


_SCRIPTS = (
    ("Han", ((0x4E00, 0x9FFF), (0x3400, 0x4DBF), (0xF900, 0xFAFF), (0x20000, 0x2FFFF))),
    ("Kana", ((0x3040, 0x30FF),)),
    ("Hangul", ((0xAC00, 0xD7AF), (0x1100, 0x11FF), (0x3130, 0x318F))),
    ("Cyrillic", ((0x0400, 0x052F),)),
    ("Greek", ((0x0370, 0x03FF),)),
    ("Arabic", ((0x0600, 0x06FF), (0x0750, 0x077F))),
    ("Hebrew", ((0x0590, 0x05FF),)),
    ("Devanagari", ((0x0900, 0x097F),)),
    ("Thai", ((0x0E00, 0x0E7F),)),
)


def _script(char: str) -> str | None:
    code = ord(char)
    if code < 0x250:
        return "Latin" if char.isalpha() else None
    for name, ranges in _SCRIPTS:
        if any(lo <= code <= hi for lo, hi in ranges):
            return name
    return None


def script_shares(text: str) -> dict[str, float]:
    """Share of each script among the text's letters (digits, punctuation, spaces ignored)."""
    counts = Counter(s for s in map(_script, text) if s)
    total = sum(counts.values())
    return {name: n / total for name, n in counts.items()} if total else {}


def dominant_script(text: str) -> str | None:
    shares = script_shares(text)
    if shares.get("Kana", 0) > 0.1:  # Japanese mixes Han and Kana
        return "Kana"
    return max(shares, key=shares.__getitem__) if shares else None
