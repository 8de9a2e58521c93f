"""Published closed-model scores, used as targets when no closed model is run, each with its
provenance. A published score came from a finite test set: where its n is known, the
comparison includes its sampling error."""

from __future__ import annotations

from dataclasses import dataclass

from openparity.errors import OpenparityError

FULL_TEST_SETS = {"mmlu": 14042, "gsm8k": 1319, "humaneval": 164}


@dataclass(frozen=True)
class Published:
    """A published score and where it comes from. `model` None: the source names none."""

    score: float  # in [0, 1]
    source: str
    n: int | None = None  # items it was measured on; None: unknown
    model: str | None = None
    date: str | None = None
    shots: str | None = None
    protocol: str | None = None
    url: str | None = None

    def provenance(self) -> str:
        """One line: what the number is, on what, by whom, from where."""
        parts = [
            f"{self.score * 100:.1f}",
            f"model {self.model}" if self.model else "model not named by the source",
            f"n={self.n}" if self.n else "n unknown",
            self.shots,
            self.protocol,
            self.date,
            self.source,
            self.url,
        ]
        return ", ".join(p for p in parts if p)


SEED = "the seed's verification table (closed-model baseline)"
_SEED_NOTE = "n assumed: the full test set"

# Default targets for `openparity gap` without --closed.
PUBLISHED_BASELINES: dict[str, Published] = {
    task: Published(score, SEED, n=FULL_TEST_SETS[task], protocol=_SEED_NOTE)
    for task, score in (("mmlu", 0.885), ("gsm8k", 0.941), ("humaneval", 0.917))
}

_GPT4 = {
    "model": "gpt-4 (2023-03)",
    "date": "2023-03-15",
    "source": "GPT-4 technical report",
    "url": "https://arxiv.org/abs/2303.08774",
}
_LLAMA = {
    "model": "llama-3.1-405b-instruct",
    "date": "2024-07-23",
    "source": "Llama 3.1 model card",
    "url": "https://arxiv.org/abs/2407.21783",
}

# Other public reference points: `--target TASK=NAME` uses them by name.
REFERENCE_SCORES: dict[str, dict[str, Published]] = {
    "gpt-4": {
        "mmlu": Published(0.864, n=14042, shots="5-shot", **_GPT4),
        "gsm8k": Published(0.920, n=1319, shots="5-shot CoT", **_GPT4),
        "humaneval": Published(0.670, n=164, shots="0-shot", **_GPT4),
    },
    "llama-3.1-405b-instruct": {
        "mmlu": Published(0.873, n=14042, shots="5-shot", **_LLAMA),
        "gsm8k": Published(0.968, n=1319, shots="8-shot CoT", **_LLAMA),
        "humaneval": Published(0.890, n=164, shots="0-shot", **_LLAMA),
    },
}


def parse_target(entry: str) -> tuple[str, Published]:
    """`TASK=SCORE`, `TASK=SCORE/N` (measured on N items) or `TASK=NAME` (a reference above)."""
    task, sep, value = entry.partition("=")
    task = task.strip().lower()
    hint = (
        "write TASK=SCORE (0-100), TASK=SCORE/N with the items it was measured on, or"
        f" TASK=NAME with NAME among: {', '.join(REFERENCE_SCORES)}"
    )
    if not sep or not task:
        raise OpenparityError(f"bad --target {entry!r}", hint=hint)
    if value in REFERENCE_SCORES:
        if task not in REFERENCE_SCORES[value]:
            raise OpenparityError(f"{value} publishes no {task} score", hint=hint)
        return task, REFERENCE_SCORES[value][task]
    score, _, n = value.partition("/")
    try:
        points, items = float(score), int(n) if n else None
    except ValueError:
        raise OpenparityError(f"bad --target {entry!r}", hint=hint) from None
    if not 0 <= points <= 100 or (items is not None and items < 1):
        raise OpenparityError(f"bad --target {entry!r}: score out of range", hint=hint)
    return task, Published(points / 100, "--target", n=items)
