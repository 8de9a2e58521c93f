"""Prices per million tokens, and the cost of a call computed from its real token counts.

Built-in prices are list prices (USD, standard tier, no batch or cache discounts) copied from the
vendors' public pricing pages; each carries its source and the date it was recorded. Prices
drift: override any of them in models.yaml (`price: {input: ..., output: ...}`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class Price:
    """USD per million input (prompt) and output (completion) tokens."""

    input_per_mtok: float
    output_per_mtok: float
    source: str
    as_of: str

    def cost(self, prompt_tokens: int, completion_tokens: int) -> float:
        return (
            prompt_tokens * self.input_per_mtok + completion_tokens * self.output_per_mtok
        ) / 1_000_000


_OPENAI = "https://openai.com/api/pricing"
_DEEPSEEK = "https://api-docs.deepseek.com/quick_start/pricing"

BUILTIN_PRICES: dict[str, Price] = {
    "gpt-4o": Price(2.50, 10.00, _OPENAI, "2025-08"),
    "gpt-4o-mini": Price(0.15, 0.60, _OPENAI, "2025-08"),
    "gpt-4.1": Price(2.00, 8.00, _OPENAI, "2025-08"),
    "gpt-4.1-mini": Price(0.40, 1.60, _OPENAI, "2025-08"),
    "gpt-4.1-nano": Price(0.10, 0.40, _OPENAI, "2025-08"),
    "o3": Price(2.00, 8.00, _OPENAI, "2025-08"),
    "o4-mini": Price(1.10, 4.40, _OPENAI, "2025-08"),
    "gpt-4-turbo": Price(10.00, 30.00, _OPENAI, "2025-08"),
    "gpt-3.5-turbo": Price(0.50, 1.50, _OPENAI, "2025-08"),
    "deepseek-chat": Price(0.28, 0.42, _DEEPSEEK, "2025-10"),
    "deepseek-reasoner": Price(0.28, 0.42, _DEEPSEEK, "2025-10"),
}

LOCAL_COMPUTE = Price(0.0, 0.0, "local compute (not priced; set a price in models.yaml)", "-")


def builtin_price(model_name: str) -> Price | None:
    """The built-in list price for a hosted model name, or None when we do not know it.

    Dated snapshots ("gpt-4o-2024-08-06", "deepseek-chat-0324") use their family's price; any
    other variant ("gpt-4o-audio-preview") is unknown rather than guessed.
    """
    return BUILTIN_PRICES.get(model_name) or BUILTIN_PRICES.get(
        _SNAPSHOT_SUFFIX.sub("", model_name)
    )


_SNAPSHOT_SUFFIX = re.compile(r"-(\d{4}-\d{2}-\d{2}|\d{4})$")
