"""`openparity data clean` on real JSONL files: every record accounted for, each filter's
reason, decontamination against real GSM8K test items, PII, near-dup recall, resume."""

from __future__ import annotations

import json
import random

import pytest

from openparity.bench.tasks import get_task
from openparity.data.decontam import item_text
from openparity.data.filters import PiiScrubber
from openparity.data.pipeline import CleanError, CleanSettings, clean
from tests.cli import openparity

WORDS = [
    f"{w}{i}" for w in ("river", "stone", "cloud", "maple", "ember", "delta") for i in range(50)
]


def distinct_answer(rng: random.Random, n: int = 40) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(n))


def write(path, rows, extra_lines=()):
    with path.open("w", encoding="utf-8") as handle:
        for row in rows:
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")
        for line in extra_lines:
            handle.write(line + "\n")
    return path


def corpus(rng: random.Random, n: int = 60) -> list[dict]:
    rows = [
        {
            "id": f"r{i}",
            "messages": [
                {"role": "user", "content": f"Question {i}?"},
                {"role": "assistant", "content": distinct_answer(rng)},
            ],
        }
        for i in range(n)
    ]
    great_wall = (
        "长城是中国古代的军事防御工程，绵延上万里，修建历经两千多年，是世界文化遗产。"
        "联系人邮箱 wang@example.cn，手机 13812345678。"
    )
    rows.append({"id": "zh", "prompt": "介绍一下长城。", "response": great_wall})
    return rows


def rows_of(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_every_record_ends_in_exactly_one_place(tmp_path):
    rng = random.Random(0)
    rows = corpus(rng)
    gsm8k = item_text(get_task("gsm8k").items()[3])
    near_answer = {"role": "assistant", "content": rows[7]["messages"][1]["content"] + " maple3"}
    rows += [
        dict(rows[4], id="copy-of-r4"),
        {"id": "near-r7", "messages": [rows[7]["messages"][0], near_answer]},
        {"id": "refusal", "prompt": "Help?", "response": "I'm sorry, but I can't help with that."},
        {"id": "boiler", "text": "As an AI language model, I think the weather is nice today."},
        {"id": "fence", "text": "Here is code:\n```python\nprint('never closed')\n"},
        {"id": "short", "text": "ok"},
        {"id": "leak", "prompt": "Solve this.", "response": gsm8k},
    ]
    source = write(tmp_path / "in.jsonl", rows, ["{not json", "", "[1, 2]", '{"id": "empty"}'])
    report = clean([source], tmp_path / "out", CleanSettings(benchmarks=("gsm8k",), batch=7))
    out = tmp_path / "out"
    kept, rejected, quarantine = (
        rows_of(out / f"{n}.jsonl") for n in ("kept", "rejected", "quarantine")
    )
    assert report.balanced and report.lines == len(rows) + 4
    assert len(kept) + len(rejected) + len(quarantine) + report.blank == report.lines
    reasons = {r["id"]: r["reason"] for r in rejected}
    assert reasons["copy-of-r4"] == "exact_duplicate:r4"
    assert reasons["near-r7"] == "near_duplicate:r7"
    assert reasons["refusal"] == "refusal" and reasons["boiler"] == "boilerplate"
    assert reasons["fence"] == "broken_code_block" and reasons["short"] == "too_short"
    assert reasons["leak"].startswith("contaminated:13gram:gsm8k/")
    assert report.contaminated_items == {reasons["leak"].split(":", 2)[2]: 1}
    assert [q["line"] for q in quarantine] == [len(rows) + 1, len(rows) + 3, len(rows) + 4]
    assert "not JSON" in quarantine[0]["error"] and "no text" in quarantine[2]["error"]
    chinese = next(k for k in kept if k["id"] == "zh")
    assert "<EMAIL>" in chinese["response"] and "<PHONE>" in chinese["response"]
    assert "长城" in chinese["response"]
    assert json.loads((out / "report.json").read_text())["balanced"] is True


def test_pii_scrubber_knows_luhn_keys_and_chinese_mobiles():
    scrubber = PiiScrubber()
    text = scrubber.scrub(
        "card 4111 1111 1111 1111, order 1234 5678 9012 3456, ip 10.0.0.254,"
        " key sk-proj-abcdefghijklmnopqrstuvwx, 电话 13912345678, mail a.b@c.io, year 2024"
    )
    assert text == (
        "card <CARD>, order 1234 5678 9012 3456, ip <IP>, key <API_KEY>, 电话 <PHONE>,"
        " mail <EMAIL>, year 2024"
    )
    assert dict(scrubber.counts) == {"card": 1, "ip": 1, "api_key": 1, "phone": 1, "email": 1}


def test_near_duplicate_recall_without_false_positives(tmp_path):
    rng = random.Random(5)
    originals = [{"id": f"o{i}", "text": distinct_answer(rng, 80)} for i in range(150)]
    planted = []
    for i, row in enumerate(originals[:50]):  # one word of 80 changed
        tokens = row["text"].split()
        tokens[rng.randrange(len(tokens))] = "changed"  # shingle Jaccard about 0.88
        planted.append({"id": f"p{i}", "text": " ".join(tokens)})
    source = write(tmp_path / "in.jsonl", originals + planted)
    for index in ("memory", "disk"):  # the on-disk index makes the same decisions
        out = tmp_path / index
        report = clean([source], out, CleanSettings(benchmarks=(), near_index=index))
        rejected = rows_of(out / "rejected.jsonl")
        assert {r["id"] for r in rejected} == {p["id"] for p in planted}  # all, no original
        assert report.kept == 150


@pytest.mark.parametrize("index", ["memory", "disk"])
def test_resume_after_a_crash_loses_and_duplicates_nothing(tmp_path, index):
    rng = random.Random(1)
    rows = [*corpus(rng, 90), dict(corpus(random.Random(1), 90)[10], id="late-copy")]
    source = write(tmp_path / "in.jsonl", rows, ["{bad"])
    settings = CleanSettings(benchmarks=(), batch=10, near_index=index)
    whole = clean([source], tmp_path / "whole", settings)

    def crash(report):
        if report.lines >= 40:
            raise KeyboardInterrupt

    with pytest.raises(CleanError, match="--resume"):
        clean([source], tmp_path / "split", settings, progress=crash)
    with (tmp_path / "split" / "kept.jsonl").open("a", encoding="utf-8") as handle:
        handle.write('{"id": "torn write after the last comm')  # what a kill -9 leaves
    with pytest.raises(CleanError, match="already holds"):
        clean([source], tmp_path / "split", settings)
    resumed = clean([source], tmp_path / "split", settings, resume=True)
    assert resumed.to_dict() | {"seconds": 0} == whole.to_dict() | {"seconds": 0}
    for name in ("kept", "rejected", "quarantine"):
        assert rows_of(tmp_path / "split" / f"{name}.jsonl") == rows_of(
            tmp_path / "whole" / f"{name}.jsonl"
        )


def test_cli_reports_and_refuses_clearly(tmp_path):
    source = write(tmp_path / "in.jsonl", corpus(random.Random(2), 20))
    ran = openparity(
        "data",
        "clean",
        str(source),
        "-o",
        str(tmp_path / "out"),
        "--json",
        "--benchmarks",
        "humaneval",
    )
    assert ran.returncode == 0, ran.stderr
    assert json.loads(ran.stdout)["kept"] == 21
    again = openparity("data", "clean", str(source), "-o", str(tmp_path / "out"))
    assert again.returncode == 2 and "--resume" in again.stderr and "Traceback" not in again.stderr
    missing = openparity("data", "clean", str(tmp_path / "nope.jsonl"), "-o", str(tmp_path / "x"))
    assert missing.returncode == 2 and "input not found" in missing.stderr


@pytest.mark.slow
def test_ray_executor_gives_the_same_outputs_as_local(tmp_path):
    ray = pytest.importorskip("ray")
    rng = random.Random(3)
    rows = [
        *corpus(rng, 40),
        dict(corpus(random.Random(3), 40)[5], id="copy"),
        {"id": "rude", "text": "Honestly you are an idiot, and that is final."},
    ]
    source = write(tmp_path / "in.jsonl", rows, ["{bad", ""])
    local = clean([source], tmp_path / "local", CleanSettings(benchmarks=("humaneval",)))
    on_ray = CleanSettings(benchmarks=("humaneval",), executor="ray", batch=16)
    try:
        distributed = clean([source], tmp_path / "ray", on_ray)
    finally:
        ray.shutdown()
    assert distributed.to_dict() | {"seconds": 0} == local.to_dict() | {"seconds": 0}
    for name in ("kept", "rejected", "quarantine"):
        assert rows_of(tmp_path / "ray" / f"{name}.jsonl") == rows_of(
            tmp_path / "local" / f"{name}.jsonl"
        )


@pytest.mark.slow
def test_the_reported_catch_rate_matches_minhash_lsh():
    """1 - (1 - s^r)^b, checked against datasketch on pairs of exactly this Jaccard."""
    from datasketch import MinHash, MinHashLSH

    from openparity.data.dedup import expected_catch_rate

    threshold, trials, caught = 0.8, 300, 0
    for trial in range(trials):
        a = {f"w{trial}-{i}" for i in range(90)}
        b = set(list(a)[:80]) | {f"x{trial}-{i}" for i in range(10)}  # |a&b|=80, |a|b|=100
        lsh = MinHashLSH(threshold=threshold, num_perm=128)
        signatures = []
        for words in (a, b):
            m = MinHash(num_perm=128, seed=trial)
            m.update_batch([w.encode() for w in words])
            signatures.append(m)
        lsh.insert("a", signatures[0])
        caught += "a" in lsh.query(signatures[1])
    bands, rows = lsh.b, lsh.r
    expected = expected_catch_rate(0.8, bands, rows)
    assert abs(caught / trials - expected) < 4 * (expected * (1 - expected) / trials) ** 0.5 + 0.02
