"""Asking a lettered multiple-choice question the same way in every task."""

from __future__ import annotations

from collections.abc import Sequence


def options_block(options: Sequence[str], letters: str = "ABCDE") -> str:
    return "\n".join(f"{letter}. {text}" for letter, text in zip(letters, options, strict=False))


def answer_instruction(letters: str, *, chain_of_thought: bool) -> str:
    listed = ", ".join(letters[:-1]) + f" or {letters[-1]}"
    if chain_of_thought:
        return f'Think step by step, then finish with "Answer: X" where X is {listed}.'
    return f"Answer with the letter of the correct option only ({listed})."
