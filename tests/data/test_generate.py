"""`openparity data generate`: the embedded model as a real teacher (English and Chinese seeds),
and a scripted teacher for the method logic (novelty filter, failed rewrites, pairs, resume)."""

from __future__ import annotations

import json

import pytest

from openparity.data.generate import GenerateError, GenerateSettings, generate, load_seeds
from openparity.models import open_model
from tests.cli import openparity


def seeds_file(tmp_path, prompts):
    path = tmp_path / "seeds.jsonl"
    path.write_text(
        "".join(
            json.dumps({"id": f"s{i}", "prompt": p}, ensure_ascii=False) + "\n"
            for i, p in enumerate(prompts)
        ),
        encoding="utf-8",
    )
    return path


def records(path):
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


@pytest.mark.slow
def test_embedded_teacher_answers_english_and_chinese_seeds_via_the_cli(tmp_path):
    seeds = seeds_file(tmp_path, ["Explain what a hash table is.", "请简单介绍一下长城。"])
    out = tmp_path / "gen.jsonl"
    store = str(tmp_path / "s.sqlite")
    ran = openparity(
        "data",
        "generate",
        str(seeds),
        "--teacher",
        "local:smollm2-135m",
        "-o",
        str(out),
        "--max-tokens",
        "48",
        "--store",
        store,
    )
    assert ran.returncode == 0, ran.stderr
    rows = records(out)
    assert {r["id"] for r in rows} <= {"s0", "s1"} and rows
    for row in rows:
        assert row["messages"][0]["role"] == "user" and row["messages"][1]["content"]
        assert row["provenance"]["teacher"] == "local:smollm2-135m"
        assert row["provenance"]["completion_tokens"] > 0
    again = openparity(
        "data",
        "generate",
        str(seeds),
        "--teacher",
        "local:smollm2-135m",
        "-o",
        str(out),
        "--max-tokens",
        "48",
    )
    assert again.returncode == 2 and "--resume" in again.stderr


async def test_self_instruct_keeps_only_novel_tasks(tmp_path, stub):
    stub.script(
        {"text": "Task: Write a haiku about autumn leaves."},  # new
        {"text": "Task: Explain what a hash table is."},  # a copy of a seed: not novel
        {"text": "An answer about autumn leaves, in three short lines of verse."},
    )
    seeds = load_seeds(seeds_file(tmp_path, ["Explain what a hash table is.", "Sort a list."]))
    out = tmp_path / "si.jsonl"
    settings = GenerateSettings(method="self-instruct", count=1, concurrency=2)
    async with open_model(f"openai:teacher@{stub.base_url}") as teacher:
        assert await generate(teacher, seeds, out, settings) == 1
    (row,) = records(out)
    assert row["messages"][0]["content"] == "Write a haiku about autumn leaves."
    assert row["provenance"]["method"] == "self-instruct"
    assert row["provenance"]["completion_tokens"] > 10  # the proposal and the answer


async def test_evol_eliminates_failed_rewrites(tmp_path, stub):
    seeds = load_seeds(seeds_file(tmp_path, ["Sort a list of numbers in Python."]))
    stub.script(
        {"text": "Sort a list of numbers in Python."},  # unchanged: eliminated
        {"text": "Sort a list of numbers in Python without sorted(), in O(n log n), and explain."},
        {"text": "Here is a merge sort written from scratch, with a proof of its complexity."},
    )
    out = tmp_path / "evol.jsonl"
    async with open_model(f"openai:teacher@{stub.base_url}") as teacher:
        total = await generate(teacher, seeds, out, GenerateSettings(method="evol", count=1))
    assert total == 1
    (row,) = records(out)
    assert "without sorted()" in row["messages"][0]["content"]
    assert row["parent"] == "s0" and row["evolution"]


@pytest.mark.slow
async def test_pairs_and_resume_without_duplicates(tmp_path, stub):
    seeds = load_seeds(seeds_file(tmp_path, ["What is 2 + 2? Explain.", "Name a prime number."]))
    out = tmp_path / "pairs.jsonl"
    async with open_model(f"openai:teacher@{stub.base_url}") as model:
        with pytest.raises(GenerateError, match="student"):
            await generate(model, seeds, out, GenerateSettings(method="pairs"))
        stub.script(
            {"text": "Two plus two is four, because adding two twice gives four."},
            *[{"status": 500}] * 5,  # the second teacher answer fails, retries included
            {"text": "It is five, probably, I am not sure at all."},
            {"text": "I do not know which number is prime, sorry about that here."},
        )
        await generate(model, seeds, out, GenerateSettings(method="pairs"), student=model)
        first = records(out)
        with out.open("a", encoding="utf-8") as handle:
            handle.write('{"id": "torn')  # a crash mid-line
        total = await generate(
            model, seeds, out, GenerateSettings(method="pairs"), student=model, resume=True
        )
    rows = records(out)
    assert total == len(rows) == len({r["id"] for r in rows})
    assert first and all({"prompt", "chosen", "rejected"} <= set(r) for r in rows)


@pytest.mark.slow
def test_magpie_samples_instructions_from_the_embedded_models_template(tmp_path):
    out = tmp_path / "magpie.jsonl"
    ran = openparity(
        "data",
        "generate",
        "--method",
        "magpie",
        "--teacher",
        "local:smollm2-135m",
        "--count",
        "2",
        "--max-tokens",
        "40",
        "-o",
        str(out),
        "--store",
        str(tmp_path / "s.sqlite"),
    )
    assert ran.returncode == 0, ran.stderr
    rows = records(out)
    assert len(rows) == 2 and len({r["messages"][0]["content"] for r in rows}) == 2
    assert all(r["provenance"]["method"] == "magpie" for r in rows)
    remote = "openai:x@http://127.0.0.1:9/v1"
    refused = openparity(
        "data",
        "generate",
        "--method",
        "magpie",
        "--teacher",
        remote,
        "-o",
        str(tmp_path / "m2.jsonl"),
    )
    assert refused.returncode == 2 and "local GGUF" in refused.stderr
