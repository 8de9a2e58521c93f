"""Published closed-model scores, used as targets when no closed model is run."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Published:
    score: float  # in [0, 1]
    source: str


SEED = "the seed's verification table (closed-model baseline)"

# Default targets for `openparity gap` without --closed.
PUBLISHED_BASELINES: dict[str, Published] = {
    "mmlu": Published(0.885, SEED),
    "gsm8k": Published(0.941, SEED),
    "humaneval": Published(0.917, SEED),
}

# Other public reference points, for --target TASK=SCORE comparisons and the docs.
REFERENCE_SCORES: dict[str, dict[str, Published]] = {
    "gpt-4 (technical report)": {
        "mmlu": Published(0.864, "GPT-4 technical report, 5-shot"),
        "gsm8k": Published(0.920, "GPT-4 technical report, 5-shot CoT"),
        "humaneval": Published(0.670, "GPT-4 technical report, 0-shot"),
    },
    "llama-3.1-405b-instruct": {
        "mmlu": Published(0.873, "Llama 3.1 model card, 5-shot"),
        "gsm8k": Published(0.968, "Llama 3.1 model card, 8-shot CoT"),
        "humaneval": Published(0.890, "Llama 3.1 model card, 0-shot"),
    },
}
