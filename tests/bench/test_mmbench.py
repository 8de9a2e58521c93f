"""MMBench: official TSV with base64 images, CircularEval, image messages, vision gate."""

import base64
import csv

import pytest

from openparity.bench.comparison import load_scores
from openparity.bench.errors import TaskError
from openparity.bench.runner import run_task
from openparity.bench.store import RunStore
from openparity.bench.tasks import get_task
from openparity.bench.tasks.mmbench import FIXTURE, MMBench
from openparity.models import open_model
from openparity.models.spec import parse_spec, with_overrides
from openparity.testing.stub_server import StubServer


def test_fixture_expands_into_rotations():
    task = MMBench.fixture()
    items = task.items()
    assert len(items) == 4 + 4 + 2 + 3  # one item per rotation of each question's options
    first = [i for i in items if i.cluster == "mmbench/0"]
    assert [i.input["options"] for i in first][:2] == [
        ["Red", "Blue", "Green", "Yellow"],
        ["Blue", "Green", "Yellow", "Red"],
    ]
    assert [i.reference for i in first] == ["A", "D", "C", "B"]  # "Red" wherever it moved
    assert task.source().fixture


def test_messages_carry_the_image_as_a_data_uri():
    item = MMBench.fixture().items()[0]
    [message] = MMBench.fixture().messages(item, "zero-shot")
    image, text = message["content"]
    assert image["image_url"]["url"].startswith("data:image/png;base64,iVBOR")
    assert "A. Red" in text["text"] and "D. Yellow" in text["text"]


async def test_circular_eval_needs_every_rotation_right(tmp_path):
    """A model that always answers "A" is right once per question, and scores 0."""
    with StubServer(text="A") as stub, RunStore(tmp_path / "s.sqlite") as store:
        spec = with_overrides(parse_spec(f"openai:vlm@{stub.base_url}"), vision=True)
        async with open_model(spec) as model:
            summary = await run_task(model, MMBench.fixture(), store)
        assert summary.done == 13
        scores = load_scores(store, summary.run.run_id)
        per_item = [r.score for r in store.records(summary.run.run_id)]
        assert sum(per_item) == 4  # one rotation per question has "A" right
        assert scores.scores == dict.fromkeys(
            ["mmbench/0", "mmbench/1", "mmbench/2", "mmbench/3"], 0.0
        )
        body = stub.requests[0]["body"]
        assert body["messages"][0]["content"][0]["type"] == "image_url"


async def test_option_text_answers_count(tmp_path):
    task = MMBench.fixture()
    item = task.items()[1]  # options rotated: Blue, Green, Yellow, Red -> Red is D
    assert (await task.score(item, "Red.")).value == 1.0
    assert (await task.score(item, "D")).value == 1.0


async def test_text_only_models_are_refused(tmp_path):
    with RunStore(tmp_path / "s.sqlite") as store:
        async with open_model("local:smollm2-135m") as model:
            with pytest.raises(TaskError, match="not marked vision-capable"):
                await run_task(model, MMBench.fixture(), store)
    assert parse_spec("openai:gpt-4o").vision and not parse_spec("openai:gpt-3.5-turbo").vision


def test_limit_takes_whole_questions():
    from openparity.bench.task import select

    chosen = select(MMBench.fixture().items(), 2, whole_clusters=True)
    clusters = {i.cluster for i in chosen}
    assert len(clusters) == 2
    assert len(chosen) == sum(len(i.input["options"]) for i in chosen if i.id.endswith("/c0"))


def test_bad_tsv_rows(tmp_path):
    rows = list(csv.DictReader(FIXTURE.open(encoding="utf-8"), delimiter="\t"))
    fields = list(rows[0])

    def write(row):
        path = tmp_path / "mm.tsv"
        with path.open("w", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, fieldnames=fields, delimiter="\t")
            writer.writeheader()
            writer.writerow(row)
        return get_task("mmbench", data=path)

    with pytest.raises(TaskError, match="answer 'D' is not one of its options"):
        write({**rows[2], "answer": "D"}).items()
    with pytest.raises(TaskError, match="not valid base64"):
        write({**rows[0], "image": "@@not base64@@"}).items()
    with pytest.raises(TaskError, match="--fixture"):
        get_task("mmbench").items()
    assert base64.b64decode(rows[0]["image"]).startswith(b"\x89PNG")
