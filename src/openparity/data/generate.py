"""`openparity data generate`: a teacher model writes training data.

Methods
- seeds: answer each seed prompt (JSONL: `prompt`, or `messages`).
- self-instruct: from seed tasks, the teacher proposes new instructions (3 random examples in
  the prompt, Wang et al. 2023); one is kept only if its ROUGE-L against every instruction so
  far is below 0.7; then the teacher answers it.
- evol: Evol-Instruct (Xu et al. 2023): each seed is rewritten in depth (constraints, deeper,
  more concrete, more reasoning steps) or in breadth (a new, rarer task of the same domain);
  failed rewrites are eliminated (unchanged or copied prompt, template words leaked, answer a
  refusal or under 5 words).
- pairs: preference pairs for DPO: the teacher's answer is `chosen`, a student model's
  (`--student`) is `rejected`.
- magpie: Magpie (Xu et al. 2024) for local GGUF teachers: the model completes its own chat
  template up to where a user message begins, which samples an instruction with no seed at
  all; instructions are kept when novel (ROUGE-L), then answered. Seeds are not needed.

Every record carries provenance (teacher, method, template, params, time, tokens, cost).
Records are appended as they finish (one write per line, flushed); a rerun with `resume`
skips what the output already holds and drops a torn last line, so nothing is duplicated.
Teacher answers go through the harness's response cache.
"""

from __future__ import annotations

import json
import random
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from openparity.bench.qa_metrics import rouge_l
from openparity.errors import OpenparityError
from openparity.models import ChatModel, ChatRequest, Completion
from openparity.textsignals import REFUSAL

METHODS = ("seeds", "self-instruct", "evol", "pairs", "magpie")

SELF_INSTRUCT = """You write new tasks for training an AI assistant. Here are example tasks:
{examples}
Write one new task that is different from all of them in topic and form. Write it in the same
language as the examples. Reply with the task only, on one line, starting with "Task:"."""

EVOL_DEPTH = {
    "constraints": "Add one more constraint or requirement to the prompt.",
    "deepen": "Make the prompt ask for a deeper, broader treatment of the same question.",
    "concretize": "Replace general concepts in the prompt with more specific ones.",
    "reasoning": "Rewrite the prompt so that it explicitly needs several reasoning steps.",
}
EVOL_TEMPLATE = """Rewrite the given prompt into a more complex version that a capable AI
assistant can still answer. {instruction} Keep the language of the prompt. Do not answer it.
Reply with the rewritten prompt only.
#Given Prompt#:
{prompt}"""
EVOL_BREADTH = """Write a brand-new prompt in the same domain as the given prompt but about a
rarer topic, of similar length and difficulty. Keep the language of the prompt. Reply with
the new prompt only.
#Given Prompt#:
{prompt}"""


class GenerateError(OpenparityError):
    """Generation cannot start (bad seeds, unknown method...)."""


@dataclass(frozen=True)
class GenerateSettings:
    method: str = "seeds"
    count: int = 100  # records to produce (self-instruct, evol); seeds / pairs: all seeds
    max_tokens: int = 512
    temperature: float = 0.7
    concurrency: int = 8
    novelty: float = 0.7  # self-instruct: ROUGE-L above this to any instruction = not new
    seed: int = 0


def load_seeds(path: Path) -> list[dict[str, Any]]:
    """Seed prompts: `{"id", "prompt"}` or chat `messages` (the last user turn is the prompt)."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (FileNotFoundError, UnicodeDecodeError) as exc:
        raise GenerateError(f"cannot read seeds {path} ({type(exc).__name__})") from None
    seeds = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise GenerateError(f"{path}:{number}: not JSON ({exc.msg})") from None
        prompt = row.get("prompt") if isinstance(row, dict) else None
        if not isinstance(prompt, str) and isinstance(row, dict):
            users = [
                m
                for m in row.get("messages") or []
                if isinstance(m, dict) and m.get("role") == "user"
            ]
            prompt = users[-1].get("content") if users else None
        if not isinstance(prompt, str) or not prompt.strip():
            raise GenerateError(f"{path}:{number}: no prompt", hint='give "prompt" or messages')
        seeds.append({"id": str(row.get("id") or f"seed-{number}"), "prompt": prompt.strip()})
    if not seeds:
        raise GenerateError(f"{path} holds no seed prompts")
    return seeds


class Output:
    """The output JSONL: ids already written (resume) and one flushed write per record."""

    def __init__(self, path: Path, resume: bool) -> None:
        self.path = path
        self.ids: set[str] = set()
        if path.exists():
            if not resume:
                raise GenerateError(f"{path} exists", hint="pass --resume to continue it")
            raw = path.read_bytes()
            complete = raw[: raw.rfind(b"\n") + 1]  # drop a torn last line
            if len(complete) != len(raw):
                path.write_bytes(complete)
            self.ids = {json.loads(line)["id"] for line in complete.decode("utf-8").splitlines()}
        path.parent.mkdir(parents=True, exist_ok=True)
        self._handle = path.open("a", encoding="utf-8")

    def write(self, record: dict[str, Any]) -> None:
        self._handle.write(json.dumps(record, ensure_ascii=False) + "\n")
        self._handle.flush()
        self.ids.add(record["id"])

    def close(self) -> None:
        self._handle.close()


async def generate(
    teacher: ChatModel,
    seeds: list[dict[str, Any]],
    out: Path,
    settings: GenerateSettings,
    *,
    student: ChatModel | None = None,
    resume: bool = False,
    progress: Callable[[int], None] | None = None,
) -> int:
    """Write records to `out`; returns how many the output holds now."""
    if settings.method not in METHODS:
        raise GenerateError(f"unknown method {settings.method!r}", hint=", ".join(METHODS))
    if settings.method == "pairs" and student is None:
        raise GenerateError("pairs need a student model", hint="pass --student SPEC")
    output = Output(out, resume)
    rng = random.Random(settings.seed)
    try:
        if settings.method == "seeds":
            todo = [s for s in seeds if s["id"] not in output.ids]
            await _answer_all(teacher, todo, output, settings, "seeds", "answer", progress)
        elif settings.method == "pairs":
            todo = [s for s in seeds if s["id"] not in output.ids]
            await _pairs(teacher, student, todo, output, settings, progress)  # type: ignore[arg-type]
        elif settings.method == "self-instruct":
            await _self_instruct(teacher, seeds, output, settings, rng, progress)
        elif settings.method == "magpie":
            await _magpie(teacher, output, settings, progress)
        else:
            await _evolve(teacher, seeds, output, settings, rng, progress)
    finally:
        output.close()
    return len(output.ids)


def _provenance(
    model: ChatModel,
    method: str,
    template: str,
    settings: GenerateSettings,
    completions: Sequence[Completion],
) -> dict[str, Any]:
    return {
        "teacher": model.name,
        "method": method,
        "template": template,
        "params": {"temperature": settings.temperature, "max_tokens": settings.max_tokens},
        "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "prompt_tokens": sum(c.prompt_tokens for c in completions),
        "completion_tokens": sum(c.completion_tokens for c in completions),
        "cost_usd": sum(c.cost_usd or 0.0 for c in completions),
    }


def _request(
    prompt: str, settings: GenerateSettings, temperature: float | None = None
) -> ChatRequest:
    return ChatRequest.from_prompt(
        prompt,
        max_tokens=settings.max_tokens,
        temperature=settings.temperature if temperature is None else temperature,
    )


async def _answer_all(
    teacher,
    items,
    output,
    settings,
    method,
    template,
    progress,
    extra: Callable[[dict], dict] | None = None,
    earlier: dict[str, list[Completion]] | None = None,
) -> None:
    requests = [_request(item["prompt"], settings) for item in items]
    async for index, result in teacher.iter_batch(requests, concurrency=settings.concurrency):
        item = items[index]
        if isinstance(result, OpenparityError):
            continue  # not written: a resumed run asks again
        if _failed_answer(result.text):
            continue
        calls = [*(earlier or {}).get(item["id"], []), result]
        record = {
            "id": item["id"],
            "messages": [
                {"role": "user", "content": item["prompt"]},
                {"role": "assistant", "content": result.text},
            ],
            "provenance": _provenance(teacher, method, template, settings, calls),
        }
        if extra:
            record |= extra(item)
        output.write(record)
        if progress:
            progress(len(output.ids))


def _failed_answer(text: str) -> bool:
    return (len(text.split()) < 5 and len(text) < 10) or bool(REFUSAL.search(text[:400]))


async def _pairs(teacher, student, items, output, settings, progress) -> None:
    requests = [_request(item["prompt"], settings) for item in items]
    chosen = await teacher.generate_batch(requests, concurrency=settings.concurrency)
    rejected = await student.generate_batch(requests, concurrency=settings.concurrency)
    for item, good, bad in zip(items, chosen, rejected, strict=True):
        if isinstance(good, OpenparityError) or isinstance(bad, OpenparityError):
            continue
        if good.text.strip() == bad.text.strip() or _failed_answer(good.text):
            continue  # no preference to learn
        output.write(
            {
                "id": item["id"],
                "prompt": item["prompt"],
                "chosen": good.text,
                "rejected": bad.text,
                "provenance": _provenance(
                    teacher, "pairs", f"student={student.name}", settings, [good, bad]
                ),
            }
        )
        if progress:
            progress(len(output.ids))


async def _self_instruct(teacher, seeds, output, settings, rng, progress) -> None:
    pool = [s["prompt"] for s in seeds] + _written_prompts(output)
    attempts = 0
    while len(output.ids) < settings.count and attempts < settings.count * 5:
        want = min(settings.concurrency, settings.count - len(output.ids))
        attempts += want
        requests = [
            replace(
                _request(
                    SELF_INSTRUCT.format(
                        examples="\n".join(
                            f"Task: {t}" for t in rng.sample(pool, min(3, len(pool)))
                        )
                    ),
                    settings,
                    1.0,
                ),
                seed=attempts + i,
            )
            for i in range(want)
        ]
        proposals = await teacher.generate_batch(requests, concurrency=settings.concurrency)
        new = []
        for proposal in proposals:
            if isinstance(proposal, OpenparityError):
                continue
            task = _parse_task(proposal.text)
            if task and max((rouge_l(task, old) for old in pool), default=0.0) < settings.novelty:
                pool.append(task)
                number = len(output.ids) + len(new)
                new.append({"id": f"self-instruct-{number}", "prompt": task, "calls": [proposal]})
        await _answer_all(
            teacher,
            new,
            output,
            settings,
            "self-instruct",
            "SELF_INSTRUCT",
            progress,
            earlier={n["id"]: n["calls"] for n in new},
        )


async def _magpie(teacher, output, settings, progress) -> None:
    inner = getattr(teacher, "inner", teacher)  # a CachedModel wraps the local model
    if not hasattr(inner, "user_turn_prefix"):
        raise GenerateError(
            f"magpie needs a local GGUF teacher, not {teacher.name}",
            hint="use --teacher local:... (the template prefix is sampled in-process)",
        )
    prefix, end = inner.user_turn_prefix()
    pool = _written_prompts(output)
    attempt = 0
    while len(output.ids) < settings.count and attempt < settings.count * 5:
        want = min(settings.concurrency, settings.count - len(output.ids))
        found = []
        for _ in range(want):
            attempt += 1
            sampled = await inner.complete_raw(
                prefix,
                max_tokens=min(128, settings.max_tokens),
                temperature=1.0,
                stop=[end],
                seed=attempt,
            )
            instruction = sampled.text.strip()
            if len(instruction) < 8 or sampled.finish_reason == "length":
                continue  # empty, or rambling past an instruction's length
            if max((rouge_l(instruction, old) for old in pool), default=0.0) >= settings.novelty:
                continue
            pool.append(instruction)
            found.append({"id": f"magpie-{attempt}", "prompt": instruction, "calls": [sampled]})
        await _answer_all(
            teacher,
            found,
            output,
            settings,
            "magpie",
            "template-prefix",
            progress,
            earlier={f["id"]: f["calls"] for f in found},
        )


def _parse_task(text: str) -> str | None:
    found = re.search(r"(?:Task|任务)\s*[:：]\s*(.+)", text)
    task = (found.group(1) if found else text).strip().strip('"').strip()
    return task if 3 <= len(task) <= 1000 else None


async def _evolve(teacher, seeds, output, settings, rng, progress) -> None:
    rounds = 0
    while len(output.ids) < settings.count and rounds < 5:
        rounds += 1
        batch = []
        for seed in seeds:
            kind = rng.choice([*EVOL_DEPTH, "breadth"])
            key = f"evol-{seed['id']}-{rounds}-{kind}"
            if key in output.ids:
                continue
            if kind == "breadth":
                template = EVOL_BREADTH.format(prompt=seed["prompt"])
            else:
                template = EVOL_TEMPLATE.format(instruction=EVOL_DEPTH[kind], prompt=seed["prompt"])
            batch.append((key, kind, seed, _request(template, settings, 0.9)))
        batch = batch[: settings.count - len(output.ids)]
        rewrites = await teacher.generate_batch(
            [b[3] for b in batch], concurrency=settings.concurrency
        )
        evolved = []
        for (key, kind, seed, _), rewrite in zip(batch, rewrites, strict=True):
            if isinstance(rewrite, OpenparityError):
                continue
            prompt = rewrite.text.strip()
            if _failed_rewrite(seed["prompt"], prompt):
                continue
            evolved.append(
                {
                    "id": key,
                    "prompt": prompt,
                    "evolution": kind,
                    "parent": seed["id"],
                    "calls": [rewrite],
                }
            )
        await _answer_all(
            teacher,
            evolved,
            output,
            settings,
            "evol",
            "EVOL",
            progress,
            extra=lambda item: {"evolution": item["evolution"], "parent": item["parent"]},
            earlier={e["id"]: e["calls"] for e in evolved},
        )


def _failed_rewrite(original: str, rewritten: str) -> bool:
    """Evol-Instruct's elimination: empty, unchanged, template leaked, or a copy."""
    if len(rewritten) < 3 or "#Given Prompt#" in rewritten or "#Rewritten Prompt#" in rewritten:
        return True
    return rouge_l(rewritten, original) > 0.9


def _written_prompts(output: Output) -> list[str]:
    if not output.path.exists():
        return []
    prompts = []
    for line in output.path.read_text(encoding="utf-8").splitlines():
        messages = json.loads(line).get("messages") or []
        prompts += [m["content"] for m in messages[:1]]
    return prompts
