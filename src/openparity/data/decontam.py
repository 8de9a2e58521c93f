"""Decontamination against the harness's benchmark items: a record is dropped when it shares
a 13-word sequence with a benchmark item (GPT-3's test) or contains one of three 50-character
substrings sampled from an item's normalised text (GPT-4's test). The report names the items
hit, so a contaminated benchmark can be discounted.

The substrings are sampled at word starts (and records are scanned at word starts only): the
same test as GPT-4's up to alignment, with one lookup per word instead of one per character.
"""

from __future__ import annotations

import random
import re
from collections import Counter
from dataclasses import dataclass, field

from openparity.data.records import Doc, normalize, words

NGRAM = 13
SUBSTRING = 50
DEFAULT_BENCHMARKS = ("gsm8k", "mmlu", "humaneval", "arc-challenge", "mbpp")


def item_text(item) -> str:
    """The words of a benchmark item a model would see (its input fields)."""
    values = []
    for value in item.input.values():
        if isinstance(value, str):
            values.append(value)
        elif isinstance(value, (list, tuple)):
            values += [v for v in value if isinstance(v, str)]
    return "\n".join(values)


_CJK = re.compile(r"[\u3400-\u9fff]")


def _word_starts(flat: str) -> list[int]:
    """Offsets where a 50-character window may start in normalised text (single spaces):
    each word, and each CJK character."""
    last = len(flat) - SUBSTRING
    if last < 0:
        return []
    starts = [0]
    position = flat.find(" ")
    while 0 <= position < last:
        starts.append(position + 1)
        position = flat.find(" ", position + 1)
    if _CJK.search(flat):
        starts = sorted(set(starts) | {m.start() for m in _CJK.finditer(flat, 0, last + 1)})
    return starts


@dataclass
class BenchmarkIndex:
    """13-gram and sampled-substring index of benchmark items -> "task/item_id"."""

    labels: list[str] = field(default_factory=list)
    ngrams: dict[int, int] = field(default_factory=dict)
    substrings: dict[str, int] = field(default_factory=dict)

    def add(self, label: str, text: str, rng: random.Random) -> None:
        index = len(self.labels)
        self.labels.append(label)
        tokens = words(text)
        for i in range(len(tokens) - NGRAM + 1):
            self.ngrams.setdefault(hash(tuple(tokens[i : i + NGRAM])), index)
        starts = _word_starts(normalize(text))
        if starts:
            flat = normalize(text)
            for start in rng.sample(starts, min(3, len(starts))):
                self.substrings.setdefault(flat[start : start + SUBSTRING], index)

    @classmethod
    def from_benchmarks(
        cls, names: tuple[str, ...] = DEFAULT_BENCHMARKS, seed: int = 0
    ) -> BenchmarkIndex:
        from openparity.bench.tasks import get_task

        index, rng = cls(), random.Random(seed)
        for name in names:
            for item in get_task(name).items():
                index.add(f"{name}/{item.id}", item_text(item), rng)
        return index

    def hit(self, text: str) -> tuple[str, str] | None:
        """(test, item label) of the first match, or None."""
        tokens = words(text)
        for i in range(len(tokens) - NGRAM + 1):
            found = self.ngrams.get(hash(tuple(tokens[i : i + NGRAM])))
            if found is not None:
                return "13gram", self.labels[found]
        if self.substrings:
            flat = normalize(text)
            for start in _word_starts(flat):
                found = self.substrings.get(flat[start : start + SUBSTRING])
                if found is not None:
                    return "substring50", self.labels[found]
        return None


@dataclass
class Decontaminate:
    index: BenchmarkIndex
    name: str = "decontaminate"
    counts: Counter = field(default_factory=Counter)
    items_hit: Counter = field(default_factory=Counter)

    def __call__(self, doc: Doc) -> str | None:
        found = self.index.hit(doc.text)
        if found is None:
            return None
        test, label = found
        self.counts[test] += 1
        self.items_hit[label] += 1
        return f"contaminated:{test}:{label}"
