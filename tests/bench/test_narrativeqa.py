"""NarrativeQA: official-layout loader on the project's fixture, F1 / ROUGE-L, story clusters."""

import json
import shutil

import pytest

from openparity.bench.comparison import load_scores
from openparity.bench.errors import TaskError
from openparity.bench.qa_metrics import best, rouge_l, token_f1, tokens
from openparity.bench.tasks import get_task
from openparity.bench.tasks.narrativeqa import FIXTURE, NarrativeQA
from tests.cli import openparity


def test_tokens_words_and_cjk_characters():
    assert tokens("The Heron, a boat!") == ["heron", "boat"]
    assert tokens("祖父的旧照片") == ["祖", "父", "的", "旧", "照", "片"]


def test_f1_and_rouge_l_known_values():
    assert token_f1("a mirror from her cabin", "A mirror") == pytest.approx(2 * 0.25 * 1 / 1.25)
    assert token_f1("Pepper", "Pepper") == 1.0 and token_f1("cat", "dog") == 0.0
    # LCS of (police, killed, the, gunman) vs (the, gunman, kill, police) ignoring 'the': 2
    value = rouge_l("police killed the gunman", "the gunman kill police")
    p, r, beta = 1 / 3, 1 / 3, 1.2
    assert value == pytest.approx((1 + beta**2) * p * r / (r + beta**2 * p))
    assert best(token_f1, "小雨", ["他的妹妹小雨", "小雨"]) == 1.0


def test_fixture_in_the_official_layout():
    task = NarrativeQA.fixture()
    items = task.items()
    assert len(items) == 10 and len({i.cluster for i in items}) == 3
    assert all(len(i.reference) == 2 for i in items)
    assert task.source().fixture and "fixture" in task.source().description


async def test_scoring_uses_the_best_reference():
    task = NarrativeQA.fixture()
    item = next(
        i for i in task.items() if i.input["question"] == "What was the name of the fishing boat?"
    )
    assert (await task.score(item, "Heron\nextra lines are ignored")).value == 1.0
    assert (await task.score(item, "The Sparrow")).value == 0.0
    chinese = next(i for i in task.items() if i.input["question"] == "小林和谁一起上山？")
    assert (await task.score(chinese, "妹妹小雨")).value == pytest.approx(0.8)


def test_without_data_says_where_to_get_it(tmp_path):
    with pytest.raises(TaskError, match="--fixture"):
        get_task("narrativeqa").items()
    (tmp_path / "qaps.csv").write_text("document_id,set,question\n")
    with pytest.raises(TaskError, match=r"lacks qaps\.csv or"):
        get_task("narrativeqa", data=tmp_path / "missing").items()
    shutil.copytree(FIXTURE, tmp_path / "nqa")
    (tmp_path / "nqa" / "qaps.csv").write_text("document_id,set,question\nfx001,test,Why?\n")
    with pytest.raises(TaskError, match="lacks the column"):
        get_task("narrativeqa", data=tmp_path / "nqa").items()


@pytest.mark.slow
def test_fixture_run_is_labelled_and_clustered(tmp_path):
    store = tmp_path / "s.sqlite"
    result = openparity(
        "bench",
        "run",
        "local:smollm2-135m",
        "narrativeqa",
        "--fixture",
        "--store",
        str(store),
        "--json",
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    run_id = json.loads(result.stdout)["run_id"]
    report = openparity(
        "bench",
        "compare",
        run_id,
        "--target",
        "82.3",
        "--store",
        str(store),
        "--format",
        "json",
        timeout=120,
    )
    assert report.returncode == 0, report.stderr
    [task] = json.loads(report.stdout)["tasks"]
    assert task["fixture"] is True and task["open"]["clusters"] == 3
    assert "fixture" in " ".join(json.loads(report.stdout)["notes"])
    from openparity.bench.store import RunStore

    with RunStore(store) as s:
        scores = load_scores(s, run_id)
    assert len(scores.scores) == 10 and all(0 <= v <= 1 for v in scores.scores.values())
