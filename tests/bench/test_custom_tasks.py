"""User (business) tasks: YAML + JSONL, every scorer kind, and clear errors for bad files."""

import json
import math
from pathlib import Path

import pytest

from openparity.bench.errors import TaskError
from openparity.bench.runner import run_task
from openparity.bench.store import RunStore
from openparity.bench.tasks import get_task
from openparity.models import ChatRequest, open_model
from openparity.models.errors import UnsupportedCapabilityError
from openparity.testing.stub_server import StubServer

EXAMPLES = Path(__file__).parents[2] / "examples" / "tasks"


def write_task(tmp_path, scorer, rows, prompt="Q: {q}", extra=""):
    (tmp_path / "items.jsonl").write_text(
        "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8"
    )
    (tmp_path / "task.yaml").write_text(
        f"name: t\ndata: items.jsonl\nprompt: {json.dumps(prompt)}\n"
        f"scorer: {json.dumps(scorer)}\n{extra}",
        encoding="utf-8",
    )
    return get_task(str(tmp_path / "task.yaml"))


async def score(task, text, index=0):
    return await task.score(task.items()[index], text)


async def test_exact_ignores_case_space_and_punctuation(tmp_path):
    task = write_task(tmp_path, {"type": "exact"}, [{"q": "x", "reference": "Billing"}])
    assert (await score(task, "  billing. ")).value == 1.0
    assert (await score(task, "「Billing」。")).value == 1.0
    assert (await score(task, "shipping")).value == 0.0


async def test_numeric_contains_regex(tmp_path):
    numeric = write_task(
        tmp_path, {"type": "numeric", "tolerance": 0.01}, [{"q": "x", "reference": 3.14}]
    )
    assert (await score(numeric, "It is about 3.141")).value == 1.0
    assert (await score(numeric, "It is 3.2")).value == 0.0
    contains = write_task(
        tmp_path, {"type": "contains"}, [{"q": "x", "reference": ["巴黎", "Paris"]}]
    )
    assert (await score(contains, "首都是巴黎。")).value == 1.0
    regex = write_task(
        tmp_path, {"type": "regex", "pattern": r"^\s*ORDER-\d+\s*$"}, [{"q": "x", "reference": ""}]
    )
    assert (await score(regex, "ORDER-123")).value == 1.0 and (
        await score(regex, "order 12")
    ).value == 0.0


async def test_json_schema_scorer_reads_fenced_json():
    task = get_task(str(EXAMPLES / "invoice-extraction.yaml"))
    good = await score(task, '```json\n{"invoice": "INV-1042", "total": 129.9}\n```')
    assert good.value == 1.0
    wrong_type = await score(task, '{"invoice": "INV-1042", "total": "129.9"}')
    assert wrong_type.value == 0.0 and "schema" in wrong_type.detail
    not_json = await score(task, "INV-1042, 129.9")
    assert not_json.value == 0.0 and "not JSON" in not_json.detail


async def test_python_check_function():
    task = get_task(str(EXAMPLES / "code-adoption.yaml"))
    good = "```python\ndef slugify(title):\n    return title.lower().replace(' ', '-')\n```"
    assert (await score(task, good)).value == 1.0
    assert (await score(task, "```python\ndef slug(:\n```")).value == 0.0


async def test_llm_judge_scores_and_failures_become_errors(tmp_path):
    with StubServer(text="Clear and right. Score: 8") as judge:
        task = write_task(
            tmp_path,
            {
                "type": "judge",
                "model": f"openai:judge@{judge.base_url}",
                "rubric": "polite and correct",
            },
            [{"q": "Say hi", "reference": "Hello!"}],
        )
        result = await score(task, "Hello there!")
        closers = [task]
        assert result.value == pytest.approx(0.8) and "judge" in result.detail
        prompt = judge.requests[-1]["body"]["messages"][0]["content"]
        assert "polite and correct" in prompt and "Hello there!" in prompt
        judge.text = "I refuse to grade."
        with RunStore(tmp_path / "s.sqlite") as store, StubServer(text="Hi") as answerer:
            async with open_model(f"openai:a@{answerer.base_url}") as model:
                summary = await run_task(model, task, store)
            assert summary.errors == 1 and summary.done == 0
            [record] = store.records(summary.run.run_id)
            assert record.score is None and "gave no score" in record.error
        for t in closers:
            await t.aclose()


async def test_example_ticket_task_runs_end_to_end(tmp_path):
    task = get_task(str(EXAMPLES / "ticket-routing.yaml"))
    assert len(task.items()) == 6 and task.items()[3].cluster == "globex"
    assert "我的发票金额不对" in task.messages(task.items()[3], "default")[1]["content"]
    with RunStore(tmp_path / "s.sqlite") as store, StubServer(text="Billing.") as stub:
        async with open_model(f"openai:s@{stub.base_url}") as model:
            summary = await run_task(model, task, store)
        scores = {r.item_id: r.score for r in store.records(summary.run.run_id)}
    assert scores == {
        "ticket-routing/t1": 1.0,
        "ticket-routing/t2": 0.0,
        "ticket-routing/t3": 0.0,
        "ticket-routing/t4": 1.0,
        "ticket-routing/t5": 0.0,
        "ticket-routing/t6": 0.0,
    }


def test_prompt_braces_that_are_not_fields_stay(tmp_path):
    task = write_task(
        tmp_path,
        {"type": "exact"},
        [{"q": "2+2", "reference": "4"}],
        prompt='Answer as {"answer": ...}. Q: {q}',
    )
    assert (
        task.messages(task.items()[0], "default")[0]["content"]
        == 'Answer as {"answer": ...}. Q: 2+2'
    )


@pytest.mark.parametrize(
    ("yaml_text", "fragment"),
    [
        ("name: t\ndata: items.jsonl\nprompt: x\nscorer: {type: fuzzy}\n", "scorer.type"),
        ("name: t\ndata: items.jsonl\nprompt: x\nscorer: {type: regex}\n", "needs 'pattern'"),
        ("name: t\nprompt: x\nscorer: {type: exact}\n", "data: Field required"),
        (
            "name: t\ndata: items.jsonl\nprompt: x\nscorer: {type: exact}\nmax_token: 3\n",
            "max_token",
        ),
        ("name: [t\n", "not valid YAML"),
        (
            "name: t\ndata: items.jsonl\nprompt: x\nscorer: {type: python, file: nope.py}\n",
            "scorer file not found",
        ),
    ],
)
def test_bad_task_files_are_clear(tmp_path, yaml_text, fragment):
    (tmp_path / "items.jsonl").write_text('{"q": "x", "reference": "y"}\n')
    (tmp_path / "task.yaml").write_text(yaml_text)
    with pytest.raises(TaskError) as info:
        get_task(str(tmp_path / "task.yaml"))
    assert fragment in info.value.one_line()


def test_bad_items_are_clear(tmp_path):
    task = write_task(tmp_path, {"type": "exact"}, [{"q": "x"}])
    with pytest.raises(TaskError, match="record 1 lacks 'reference'"):
        task.items()
    task = write_task(tmp_path, {"type": "exact"}, [{"z": "x", "reference": "y"}])
    with pytest.raises(TaskError, match=r"prompt uses \{q\}"):
        task.items()
    task = write_task(
        tmp_path,
        {"type": "exact"},
        [{"id": 1, "q": "a", "reference": "y"}] * 2,
        extra="id_field: id\n",
    )
    with pytest.raises(TaskError, match="repeats id '1'"):
        task.items()


@pytest.mark.slow
async def test_reference_likelihood_scores_the_reference_not_an_answer(tmp_path):
    """No answer is generated, so none can be gamed: the score is how likely the model finds
    the reference reply, per token. The model's own greedy reply scores above nonsense, and a
    Chinese reference is scored like any other."""
    async with open_model("local:smollm2-135m") as model:
        asked = "What is the capital of France? Answer in one sentence."
        own = (await model.generate(ChatRequest.from_prompt(asked, max_tokens=40))).text
        rows = [
            {"q": asked, "reference": own},
            {"q": asked, "reference": "Purple lemonade sings under seven moons."},
            {"q": "法国的首都是哪里？", "reference": "法国的首都是巴黎。"},
        ]
        task = write_task(tmp_path, {"type": "reference_likelihood"}, rows, prompt="{q}")
        assert task.default_settings().variant == "reference-likelihood"
        with RunStore(tmp_path / "s.sqlite") as store:
            summary = await run_task(model, task, store)
            records = sorted(store.records(summary.run.run_id), key=lambda r: r.item_id)
    assert summary.done == 3 and summary.errors == 0
    mine, nonsense, chinese = records
    assert 0 < nonsense.score < mine.score <= 1 and 0 < chinese.score <= 1
    for record in records:  # the score is exp(mean log-probability per token), shown as such
        assert record.score == pytest.approx(math.exp(float(record.extracted)), rel=1e-3)


async def test_reference_likelihood_needs_a_model_with_its_chat_template(tmp_path):
    task = write_task(tmp_path, {"type": "reference_likelihood"}, [{"q": "x", "reference": "y"}])
    with RunStore(tmp_path / "s.sqlite") as store, StubServer(text="y") as stub:
        async with open_model(f"openai:s@{stub.base_url}") as model:
            with pytest.raises(UnsupportedCapabilityError, match="chat template"):
                await run_task(model, task, store)
    empty = write_task(tmp_path, {"type": "reference_likelihood"}, [{"q": "x", "reference": ""}])
    with pytest.raises(TaskError, match="record 1: reference_likelihood scores a reference"):
        empty.items()
