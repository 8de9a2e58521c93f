"""Quality filters (Gopher-style heuristics, boilerplate, refusals, broken code blocks, script)
and PII scrubbing. A filter returns a rejection reason or None; scrubbing rewrites the record."""

from __future__ import annotations

import itertools
import re
from collections import Counter
from dataclasses import dataclass, field

from openparity.data.records import Doc, map_text, record_text, words
from openparity.textsignals import REFUSAL, dominant_script

BOILERPLATE = (
    r"\bas an AI (?:language )?model\b",
    r"\bI (?:do not|don't) have (?:personal )?(?:opinions|feelings|access to (?:the )?internet)\b",
    r"\bmy (?:knowledge|training) (?:cutoff|cut-off)\b",
    r"\bI cannot browse the (?:internet|web)\b",
    r"作为(?:一个)?(?:AI|人工智能)(?:语言)?模型",
)


@dataclass
class QualityFilter:
    """Each rule is one reason: too_short, too_long, repeated_lines, repeated_ngrams,
    symbols, boilerplate, refusal, broken_code_block, script:<name>."""

    min_words: int = 3
    max_chars: int = 100_000
    max_duplicate_line_fraction: float = 0.3
    max_top_bigram_fraction: float = 0.2
    max_symbol_ratio: float = 0.1
    scripts: tuple[str, ...] = ()  # allowed dominant scripts; empty = any
    name: str = "quality"
    counts: Counter = field(default_factory=Counter)

    def __post_init__(self) -> None:
        self._boilerplate = re.compile("|".join(f"(?:{p})" for p in BOILERPLATE), re.IGNORECASE)

    def __call__(self, doc: Doc) -> str | None:
        reason = self._reason(doc.text)
        if reason:
            self.counts[reason] += 1
        return reason

    def _reason(self, text: str) -> str | None:
        tokens = words(text)
        if len(tokens) < self.min_words:
            return "too_short"
        if len(text) > self.max_chars:
            return "too_long"
        lines = [line.strip() for line in text.splitlines() if line.strip()]
        if len(lines) > 3:
            duplicated = sum(n - 1 for n in Counter(lines).values() if n > 1)
            if duplicated / len(lines) > self.max_duplicate_line_fraction:
                return "repeated_lines"
        if len(tokens) >= 20:
            bigrams = Counter(itertools.pairwise(tokens))
            top, count = bigrams.most_common(1)[0]
            if count * sum(map(len, top)) / sum(map(len, tokens)) > self.max_top_bigram_fraction:
                return "repeated_ngrams"
        if (
            text.count("#") + text.count("...") + text.count("…")
            > self.max_symbol_ratio * len(tokens)
            and "```" not in text
        ):
            return "symbols"
        if self._boilerplate.search(text):
            return "boilerplate"
        if REFUSAL.search(text, 0, 400):  # refusals open the answer
            return "refusal"
        if text.count("```") % 2:
            return "broken_code_block"
        if self.scripts:
            script = dominant_script(text)
            if script not in self.scripts:
                return f"script:{script or 'none'}"
        return None


def _luhn(digits: str) -> bool:
    total, double = 0, False
    for char in reversed(digits):
        value = int(char) * (2 if double else 1)
        total += value - 9 if value > 9 else value
        double = not double
    return total % 10 == 0


_API_KEY = (
    r"\b(?:sk-[A-Za-z0-9_-]{20,}|AKIA[0-9A-Z]{16}|ghp_[A-Za-z0-9]{36}"
    r"|xox[abp]-[A-Za-z0-9-]{10,}|AIza[0-9A-Za-z_-]{35})\b"
)
_PHONE = (
    r"(?<![\w+])(?:\+\d{1,3}[ -]?)?(?:\(\d{2,4}\)[ -]?|\d{3}[ -.])\d{3}[ -.]\d{4}(?![\w])"
    r"|(?<!\d)1[3-9]\d{9}(?!\d)"  # international / North American forms; Chinese mobiles
)
PII_PATTERNS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("email", re.compile(r"\b[\w.+-]+@[\w-]+(?:\.[\w-]+)*\.[A-Za-z]{2,}\b")),
    ("api_key", re.compile(_API_KEY)),
    ("card", re.compile(r"\b(?:\d[ -]?){12,18}\d\b")),
    ("ip", re.compile(r"\b(?:(?:25[0-5]|2[0-4]\d|1?\d?\d)\.){3}(?:25[0-5]|2[0-4]\d|1?\d?\d)\b")),
    ("phone", re.compile(_PHONE)),
)


_DIGITS = re.compile(r"\d{3}")
_KEY_PREFIXES = ("sk-", "AKIA", "ghp_", "xox", "AIza")


def _might_hold(kind: str, text: str, digits: bool) -> bool:
    """A cheap test that skips a pattern that cannot match (most text has no PII at all)."""
    if kind == "email":
        return "@" in text
    if kind == "api_key":
        return any(prefix in text for prefix in _KEY_PREFIXES)
    return digits


@dataclass
class PiiScrubber:
    """Replaces emails, API keys, card numbers (Luhn-valid), IPv4 addresses and phone numbers
    (international, and Chinese mobile numbers) with `<EMAIL>`-style placeholders."""

    name: str = "pii"
    counts: Counter = field(default_factory=Counter)

    def scrub(self, text: str) -> str:
        digits = _DIGITS.search(text) is not None
        for kind, pattern in PII_PATTERNS:
            if _might_hold(kind, text, digits):
                text = pattern.sub(lambda m, kind=kind: self._replace(kind, m.group(0)), text)
        return text

    def _replace(self, kind: str, found: str) -> str:
        if kind == "card" and not _luhn(re.sub(r"\D", "", found)):
            return found
        self.counts[kind] += 1
        return f"<{kind.upper()}>"

    def __call__(self, doc: Doc) -> None:
        """Scrub the record in place (one count per replacement) and re-derive its text."""
        doc.record = map_text(doc.record, self.scrub)
        doc.text = record_text(doc.record) or ""
