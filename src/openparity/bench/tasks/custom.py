"""User (business) tasks: a YAML file that points at a JSONL of items and says how to ask and
how to score. Same kind of object as the built-ins, so runs, stats and reports are shared.

    name: ticket-routing
    data: tickets.jsonl            # relative to this file; one JSON object per line
    id_field: id                   # optional (default: line number)
    reference_field: team
    cluster_field: customer        # optional: items that share a context
    system: You route support tickets.
    prompt: "Ticket: {text}\\nWhich team? Answer with one word."
    scorer: {type: exact}   # exact, numeric, regex, contains, json_schema, python, judge or
                            # reference_likelihood (no generation: how likely the model finds
                            # the reference reply; hf: and local: models)
    max_tokens: 16
    margin: 2                      # equivalence margin in points
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from openparity.bench.errors import TaskError
from openparity.bench.extract import final_number
from openparity.bench.json_answers import InvalidSchemaError, check_schema, schema_problem
from openparity.bench.judge import grade
from openparity.bench.task import DataSource, Item, Score, Task
from openparity.bench.tasks.data_files import read_jsonl
from openparity.models.types import Loglikelihood, LoglikelihoodRequest, Message
from openparity.usercode import load_function
from openparity.yamlfile import read_validated

_FIELD = re.compile(r"\{(\w+)\}")


class ScorerSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: Literal[
        "exact",
        "numeric",
        "regex",
        "contains",
        "json_schema",
        "python",
        "judge",
        "reference_likelihood",
    ]
    case_sensitive: bool = False
    tolerance: float = Field(default=1e-6, ge=0)  # numeric: absolute tolerance
    pattern: str | None = None  # regex: must match; may use {reference} and item fields
    schema_: dict[str, Any] | None = Field(default=None, alias="schema")  # json_schema
    file: str | None = None  # python: file with the check function, relative to the YAML
    function: str = "check"
    model: str | None = None  # judge: the judging model spec
    rubric: str | None = None  # judge: what a good answer is

    @model_validator(mode="after")
    def _required(self) -> ScorerSpec:
        needs = {"regex": "pattern", "json_schema": "schema_", "python": "file", "judge": "model"}
        field = needs.get(self.type)
        if field and getattr(self, field) is None:
            raise ValueError(f"scorer type {self.type!r} needs '{field.rstrip('_')}'")
        return self


class TaskSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(pattern=r"^[\w.-]+$")
    description: str = ""
    data: str
    prompt: str
    system: str | None = None
    id_field: str | None = None
    reference_field: str = "reference"
    cluster_field: str | None = None
    scorer: ScorerSpec
    max_tokens: int = Field(default=512, ge=1)
    margin: float = Field(default=2.0, gt=0, description="equivalence margin in points")


class CustomTask(Task):
    """A task defined by a user's YAML + JSONL."""

    variants = ("default",)

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.spec = load_spec(self.path)
        self.name = self.spec.name
        self.description = self.spec.description or f"user task {self.path}"
        self.default_max_tokens = self.spec.max_tokens
        self.equivalence_margin = self.spec.margin / 100
        self.metric = f"{self.spec.scorer.type} score"
        self._by_likelihood = self.spec.scorer.type == "reference_likelihood"
        if self._by_likelihood:
            self.variants = self.loglikelihood_variants = ("reference-likelihood",)
            self.metric = "per-token probability of the reference reply"
        self._judge = None
        if self.spec.scorer.type == "judge":
            from openparity.models import open_model

            # opened now so an unknown model or a missing key fails before any item is asked
            self._judge = open_model(str(self.spec.scorer.model))
        self._score = _scorer(self.spec.scorer, self.path.parent, self._judge)
        self._items: list[Item] | None = None

    def source(self) -> DataSource:
        return DataSource(f"user task {self.path} (data {self.spec.data})")

    def items(self) -> list[Item]:
        if self._items is None:
            data = (self.path.parent / self.spec.data).resolve()
            items, seen = [], set()
            for number, record in enumerate(read_jsonl(data), 1):
                if self.spec.reference_field not in record:
                    raise TaskError(f"{data}: record {number} lacks {self.spec.reference_field!r}")
                if self._by_likelihood:
                    _check_reply(record[self.spec.reference_field], data, number)
                item_id = str(
                    record.get(self.spec.id_field, number) if self.spec.id_field else number
                )
                if item_id in seen:
                    raise TaskError(f"{data}: record {number} repeats id {item_id!r}")
                seen.add(item_id)
                cluster = record.get(self.spec.cluster_field) if self.spec.cluster_field else None
                items.append(
                    Item(
                        id=f"{self.name}/{item_id}",
                        input=record,
                        reference=record[self.spec.reference_field],
                        cluster=None if cluster is None else str(cluster),
                    )
                )
            for field in _FIELD.findall(self.spec.prompt):
                if items and field not in items[0].input:
                    raise TaskError(f"{self.path}: prompt uses {{{field}}}, which {data} lacks")
            self._items = items
        return self._items

    def messages(self, item: Item, variant: str) -> list[Message]:
        messages: list[Message] = []
        if self.spec.system:
            messages.append({"role": "system", "content": fill(self.spec.system, item.input)})
        messages.append({"role": "user", "content": fill(self.spec.prompt, item.input)})
        return messages

    async def score(self, item: Item, response: str) -> Score:
        return await self._score(item, response)

    def loglikelihood_requests(self, item: Item) -> list[LoglikelihoodRequest]:
        """The reference as the assistant's reply to the task's messages."""
        if not self._by_likelihood:
            return super().loglikelihood_requests(item)
        messages = tuple(self.messages(item, self.variants[0]))
        return [LoglikelihoodRequest("", str(item.reference), messages=messages)]

    def score_loglikelihood(self, item: Item, results: Sequence[Loglikelihood]) -> Score:
        """exp(mean log-probability per token) of the reference reply, in (0, 1]: the inverse
        of its perplexity. Comparable between models that share a tokenizer (a base model and
        its fine-tunes), not across tokenizers."""
        [result] = results
        mean = result.logprob / max(1, result.n_tokens)
        return Score(math.exp(mean), f"{mean:.4f}", detail=f"{result.n_tokens} tokens")

    async def aclose(self) -> None:
        if self._judge is not None:
            await self._judge.aclose()


def _check_reply(reference: Any, data: Path, number: int) -> None:
    if not isinstance(reference, str) or not reference.strip():
        raise TaskError(
            f"{data}: record {number}: reference_likelihood scores a reference reply, and this"
            " record's reference is not a non-empty string"
        )


def fill(template: str, fields: dict[str, Any]) -> str:
    """Replace {name} with the item's field; other braces (JSON examples) stay as they are."""
    return _FIELD.sub(
        lambda m: str(fields[m.group(1)]) if m.group(1) in fields else m.group(0), template
    )


def load_spec(path: Path) -> TaskSpec:
    return read_validated(path, TaskSpec, TaskError, what="task file", hint="see examples/tasks/")


Scorer = Callable[[Item, str], Any]


def _scorer(spec: ScorerSpec, base: Path, judge: Any = None) -> Scorer:
    """An async scorer for the spec (validated now, so errors show before any model call)."""
    kind = spec.type
    if kind == "exact":
        return _sync(
            lambda item, text: _norm(text, spec) == _norm(str(item.reference), spec), str.strip
        )
    if kind == "contains":

        def contains(item: Item, text: str) -> bool:
            wanted = item.reference if isinstance(item.reference, list) else [item.reference]
            return any(_norm(str(w), spec) in _norm(text, spec) for w in wanted)

        return _sync(contains, str.strip)
    if kind == "numeric":

        def numeric(item: Item, text: str) -> bool:
            got = final_number(text)
            return got is not None and abs(float(got) - float(item.reference)) <= spec.tolerance

        return _sync(numeric, final_number)
    if kind == "regex":

        def matches(item: Item, text: str) -> bool:
            pattern = fill(
                spec.pattern or "", {**item.input, "reference": re.escape(str(item.reference))}
            )
            flags = 0 if spec.case_sensitive else re.IGNORECASE
            return re.search(pattern, text, flags | re.DOTALL) is not None

        return _sync(matches, str.strip)
    if kind == "json_schema":
        return _json_schema_scorer(spec.schema_ or {})
    if kind == "python":
        return _python_scorer(base / str(spec.file), spec.function)
    if kind == "reference_likelihood":
        return _no_answers
    return _judge_scorer(spec, judge)


async def _no_answers(item: Item, text: str) -> Score:
    raise TaskError("a reference_likelihood task scores the reference's likelihood, not answers")


def _norm(text: str, spec: ScorerSpec) -> str:
    """Whitespace collapsed, surrounding quotes and punctuation (。！ too) dropped, case folded."""
    text = " ".join(text.split()).strip(" \t\"'`*.,;:!?。，；：！？「」“”")
    return text if spec.case_sensitive else text.casefold()


def _sync(check: Callable[[Item, str], bool | float], extract: Callable[[str], Any]) -> Scorer:
    async def score(item: Item, text: str) -> Score:
        value = float(check(item, text))
        extracted = extract(text)
        return Score(min(1.0, max(0.0, value)), None if extracted is None else str(extracted)[:500])

    return score


def _json_schema_scorer(schema: dict[str, Any]) -> Scorer:
    try:
        check_schema(schema)
    except InvalidSchemaError as exc:
        raise TaskError(f"scorer schema is not a valid JSON Schema ({exc})") from None

    async def score(item: Item, text: str) -> Score:
        body = text.strip()
        fenced = re.search(r"```(?:json)?\s*\n(.*?)```", body, re.DOTALL)
        if fenced:
            body = fenced.group(1)
        try:
            value = json.loads(body)
        except json.JSONDecodeError as exc:
            return Score(0.0, None, detail=f"not JSON: {exc.msg}")
        problem = schema_problem(schema, value)
        if problem:
            return Score(0.0, body[:500], detail=problem)
        return Score(1.0, body[:500])

    return score


def _python_scorer(file: Path, function: str) -> Scorer:
    """The user's own check function, called with (response, item fields, reference); it returns
    a bool or a score in [0, 1]."""
    check = load_function(file, function, TaskError, what="scorer")

    async def score(item: Item, text: str) -> Score:
        value = check(text, dict(item.input), item.reference)
        return Score(min(1.0, max(0.0, float(value))), text.strip()[:500])

    return score


def _judge_scorer(spec: ScorerSpec, judge: Any) -> Scorer:
    rubric = spec.rubric or "correct, complete and faithful to the reference"

    async def score(item: Item, text: str) -> Score:
        result = await grade(
            judge,
            rubric=rubric,
            question=json.dumps(dict(item.input), ensure_ascii=False),
            reference=str(item.reference),
            answer=text,
        )
        return Score(
            result.score / 10,
            f"{result.score:g}",
            detail=f"judge {judge.name}: {result.verdict[:300]}",
        )

    return score
