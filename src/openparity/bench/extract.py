"""Robust answer extraction from free-form model output (English and Chinese)."""

from __future__ import annotations

import re
import unicodedata

_NUMBER = r"-?\$?\s?\d[\d,]*(?:\.\d+)?"
_FINAL_MARKERS = [
    re.compile(r"####\s*(" + _NUMBER + ")"),
    re.compile(
        r"(?:final answer|the answer is|answer\s*[:：]|答案(?:是|为)?\s*[:：]?)\s*[*(\[]*\s*("
        + _NUMBER
        + ")",
        re.IGNORECASE,
    ),
    re.compile(r"\\boxed\{\s*(" + _NUMBER + r")\s*\}"),
]
_ANY_NUMBER = re.compile(_NUMBER)


def normalize_number(text: str) -> str | None:
    """'$1,234.50' -> '1234.5'; '18.0' -> '18'; None if it is not a number."""
    cleaned = text.replace(",", "").replace("$", "").replace(" ", "").rstrip(".")
    try:
        value = float(cleaned)
    except ValueError:
        return None
    if value == int(value) and abs(value) < 1e15:
        return str(int(value))
    return repr(value)


def final_number(text: str) -> str | None:
    """The answer number: after '####', 'The answer is', '答案是', \\boxed{}, else the last one."""
    text = unicodedata.normalize("NFKC", text)  # full-width digits and colons
    for pattern in _FINAL_MARKERS:
        matches = pattern.findall(text)
        if matches:
            return normalize_number(matches[-1])
    numbers = _ANY_NUMBER.findall(text)
    return normalize_number(numbers[-1]) if numbers else None


def choice_letter(text: str, letters: str = "ABCD") -> str | None:
    """The chosen option letter: 'Answer: (B)', '**B**', '答案：B', 'B. Paris', a lone 'B'..."""
    text = unicodedata.normalize("NFKC", text)  # Ｂ -> B, ： -> :
    allowed = f"[{letters}]"
    strong = [
        rf"(?:answer|option|choice)\s*(?:is|:)?\s*[:]?\s*\**\s*[(\[]?\s*({allowed})\b",
        rf"答案\s*(?:是|为|应该是|应为)?\s*[:]?\s*[(\[]?\s*({allowed})(?![A-Za-z])",
        rf"选\s*[(\[]?\s*({allowed})(?![A-Za-z])",
        rf"\*\*\s*[(\[]?({allowed})[)\]]?[.:)]?\s*\*\*",
        rf"\\boxed\{{\s*({allowed})\s*\}}",
    ]
    for pattern in strong:
        found = re.findall(pattern, text, flags=re.IGNORECASE)
        if found:
            return found[-1].upper()
    lead = re.match(rf"\s*[(\[]?({allowed})(?:[)\].:,]|\s|$)", text)
    if lead:
        return lead.group(1)
    alone = re.findall(rf"(?<![A-Za-z])[(\[]?({allowed})[)\]]?(?![A-Za-z'])", text)
    return alone[-1] if alone else None
