"""Quality checks on an answer, each a small pydantic model that is also its own gateway.yaml
entry (`{type: regex, pattern: ...}`, or just `refusal`). A check returns a CheckResult with a
reason string; checks with a threshold also expose a score (higher is better) so that
`openparity route calibrate` can choose the threshold from real runs.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from openparity.bench.json_answers import schema_problem
from openparity.errors import OpenparityError
from openparity.models.base import ChatModel
from openparity.models.types import ChatRequest, Completion
from openparity.textsignals import REFUSALS, dominant_script, script_shares


class CheckConfigError(OpenparityError):
    """A check in gateway.yaml cannot be built (bad regex, schema, file...)."""


@dataclass(frozen=True)
class CheckResult:
    check: str
    passed: bool
    reason: str = ""
    score: float | None = None
    cost_usd: float = 0.0  # extra model calls the check made (judge, extra samples)

    def to_dict(self) -> dict[str, Any]:
        return {
            "check": self.check,
            "passed": self.passed,
            "reason": self.reason,
            "score": self.score,
        }


@dataclass
class Answer:
    """What a check sees: the request, the (possibly partial) completion, the model behind it."""

    request: ChatRequest
    completion: Completion
    model: ChatModel | None = None
    partial: bool = False  # a streamed prefix, not yet the whole answer
    recorded_logprob: float | None = None  # a harness record's mean logprob (calibration)

    @property
    def text(self) -> str:
        return self.completion.text

    @property
    def is_tool_call(self) -> bool:
        """The answer calls tools instead of (or before) writing text."""
        return bool(self.completion.tool_calls)

    @property
    def mean_logprob(self) -> float | None:
        if self.recorded_logprob is not None:
            return self.recorded_logprob
        return self.completion.mean_logprob


class Check(BaseModel):
    """Base of every check. Subclasses set `type` and implement `check` (or `run` if async)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    whole_answer: ClassVar[bool] = True  # False: it can judge a streamed prefix
    needs_logprobs: ClassVar[bool] = False
    calls_models: ClassVar[bool] = False  # judge / self-consistency: costs calls, not calibrated
    threshold_field: ClassVar[str | None] = None  # the tunable threshold, if any

    @property
    def name(self) -> str:
        return str(getattr(self, "type"))  # noqa: B009 - every subclass declares it

    async def run(self, answer: Answer) -> CheckResult:
        return self.check(answer)

    def check(self, answer: Answer) -> CheckResult:
        raise NotImplementedError

    def score(self, answer: Answer) -> float | None:
        """The quantity the threshold applies to (higher is better), for tunable checks."""
        return None

    def verdict(self, passed: bool, reason: str, score: float | None = None) -> CheckResult:
        return CheckResult(self.name, passed, "" if passed else reason, score)

    def with_threshold(self, value: float) -> Check:
        if self.threshold_field is None:
            raise CheckConfigError(f"check {self.name} has no threshold to tune")
        return self.model_copy(update={self.threshold_field: value})


class NonEmpty(Check):
    type: Literal["non_empty"] = "non_empty"

    def check(self, answer: Answer) -> CheckResult:
        return self.verdict(bool(answer.text.strip()) or answer.is_tool_call, "empty answer")


class NotTruncated(Check):
    """The answer was not cut short by a limit the client did not ask for. An answer that
    stops at the client's own `max_tokens` is what the client asked for (any model would stop
    there too); one cut by a tier's default or its context is truncated."""

    type: Literal["not_truncated"] = "not_truncated"

    def check(self, answer: Answer) -> CheckResult:
        completion = answer.completion
        if completion.finish_reason != "length":
            return self.verdict(True, "")
        asked = answer.request.max_tokens
        own_limit = asked is not None and completion.completion_tokens >= asked
        return self.verdict(own_limit, "truncated before the client's max_tokens")


class Refusal(Check):
    """The answer refuses ("I'm sorry, I can't...", "抱歉，我无法..."), in its first 300 chars."""

    type: Literal["refusal"] = "refusal"
    patterns: list[str] = Field(default_factory=lambda: list(REFUSALS))
    whole_answer: ClassVar[bool] = False

    @cached_property
    def _compiled(self) -> re.Pattern[str]:
        return _compile("|".join(f"(?:{p})" for p in self.patterns), re.IGNORECASE)

    def check(self, answer: Answer) -> CheckResult:
        if answer.is_tool_call:
            return self.verdict(True, "")
        found = self._compiled.search(answer.text[:300])
        return self.verdict(found is None, f"refusal ({found.group(0) if found else ''!r})")


class JsonValid(Check):
    """When the request's response_format asks for JSON: the answer parses, and fits the
    json_schema if one was given (or `schema` here)."""

    type: Literal["json"] = "json"
    schema_: dict[str, Any] | None = Field(default=None, alias="schema")
    always: bool = False  # check even when the request does not ask for JSON

    def check(self, answer: Answer) -> CheckResult:
        fmt = answer.request.extra.get("response_format") or {}
        kind = fmt.get("type") if isinstance(fmt, dict) else None
        if answer.is_tool_call or (not self.always and kind not in ("json_object", "json_schema")):
            return self.verdict(True, "")
        try:
            value = json.loads(answer.text)
        except json.JSONDecodeError as exc:
            return self.verdict(False, f"not JSON ({exc.msg} at char {exc.pos})")
        schema = self.schema_
        if kind == "json_schema":
            schema = (fmt.get("json_schema") or {}).get("schema") or schema
        problem = schema_problem(schema, value) if schema else None
        return self.verdict(problem is None, problem or "")


class ToolCallValid(Check):
    """When the request offers tools: every call names one of them, its arguments are a JSON
    object that fits that tool's `parameters` schema, and `tool_choice` is honoured ("required"
    or a named function means a text answer fails; "none" means a call fails)."""

    type: Literal["tool_call"] = "tool_call"

    def check(self, answer: Answer) -> CheckResult:
        tools = _offered_tools(answer.request)
        choice = answer.request.extra.get("tool_choice")
        calls = answer.completion.tool_calls
        if not calls:
            forced = choice == "required" or isinstance(choice, dict)
            return self.verdict(
                not (tools and forced), f"tool_choice={_short_json(choice)} but no tool call"
            )
        if choice == "none":
            return self.verdict(False, 'a tool call although tool_choice="none"')
        for call in calls:
            function = call.get("function") if isinstance(call, dict) else None
            name = function.get("name") if isinstance(function, dict) else None
            if name not in tools:
                return self.verdict(False, f"call to unknown tool {name!r}")
            if isinstance(choice, dict) and (choice.get("function") or {}).get("name") != name:
                return self.verdict(False, f"called {name!r}, tool_choice named another")
            try:
                arguments = json.loads(function.get("arguments") or "")
            except (TypeError, json.JSONDecodeError) as exc:
                return self.verdict(False, f"{name}: arguments are not JSON ({exc})")
            if not isinstance(arguments, dict):
                return self.verdict(False, f"{name}: arguments are not a JSON object")
            problem = schema_problem(tools[name], arguments)
            if problem:
                return self.verdict(False, f"{name}: {problem}")
        return self.verdict(True, "")


class Regex(Check):
    type: Literal["regex"] = "regex"
    pattern: str
    full: bool = False

    @cached_property
    def _compiled(self) -> re.Pattern[str]:
        return _compile(self.pattern, re.DOTALL)

    def check(self, answer: Answer) -> CheckResult:
        text = answer.text.strip()
        found = self._compiled.fullmatch(text) if self.full else self._compiled.search(text)
        return self.verdict(found is not None, f"answer does not match {self.pattern!r}")


class Length(Check):
    type: Literal["length"] = "length"
    min_chars: int = 1
    max_chars: int | None = None

    def check(self, answer: Answer) -> CheckResult:
        size = len(answer.text.strip())
        if size < self.min_chars:
            return self.verdict(False, f"answer too short ({size} < {self.min_chars} chars)")
        if self.max_chars is not None and size > self.max_chars:
            return self.verdict(False, f"answer too long ({size} > {self.max_chars} chars)")
        return self.verdict(True, "")


class Repetition(Check):
    """Degeneration: the share of distinct character 8-grams (any script) must stay above
    `min_distinct` once the answer has `min_chars` characters."""

    type: Literal["repetition"] = "repetition"
    min_distinct: float = 0.5
    min_chars: int = 60
    whole_answer: ClassVar[bool] = False
    threshold_field: ClassVar[str | None] = "min_distinct"

    def score(self, answer: Answer) -> float | None:
        text = " ".join(answer.text.split())
        if len(text) < self.min_chars:
            return 1.0
        grams = [text[i : i + 8] for i in range(len(text) - 7)]
        return len(set(grams)) / len(grams)

    def check(self, answer: Answer) -> CheckResult:
        value = self.score(answer) or 0.0
        return self.verdict(
            value >= self.min_distinct,
            f"repetitive ({value:.2f} distinct 8-grams < {self.min_distinct:g})",
            value,
        )


class Language(Check):
    """The answer is written in the request's script: Chinese in, Chinese out. Requests in Latin
    script pass unless `expect` names a script."""

    type: Literal["language"] = "language"
    min_share: float = 0.3  # of the answer's letters, in the request's script
    expect: str | None = None
    whole_answer: ClassVar[bool] = False

    def check(self, answer: Answer) -> CheckResult:
        wanted = self.expect or dominant_script(_last_user_text(answer.request))
        if answer.is_tool_call or wanted is None or (wanted == "Latin" and self.expect is None):
            return self.verdict(True, "")
        share = script_shares(answer.text).get(wanted, 0.0)
        got = dominant_script(answer.text) or "no letters"
        return self.verdict(share >= self.min_share, f"asked in {wanted}, answered in {got}", share)


class MeanLogprob(Check):
    """Mean token log-probability of the answer (the model's confidence); needs logprobs.
    Not applied to structured output (a JSON `response_format`): under constrained decoding
    the tokens' probabilities measure the grammar's mask, not the model's confidence, and a
    threshold calibrated on free text does not transfer (the embedded model's grammar-made
    JSON averages about -2.9 where its free answers pass at -1.2)."""

    type: Literal["mean_logprob"] = "mean_logprob"
    min: float = -1.0
    needs_logprobs: ClassVar[bool] = True
    threshold_field: ClassVar[str | None] = "min"

    def score(self, answer: Answer) -> float | None:
        return answer.mean_logprob

    def check(self, answer: Answer) -> CheckResult:
        if _constrained(answer.request):  # a grammar chose the tokens, not the model's belief
            return self.verdict(True, "")
        value = self.score(answer)
        if value is None:
            return self.verdict(False, "no logprobs to judge confidence")
        return self.verdict(
            value >= self.min, f"low confidence (mean logprob {value:.2f} < {self.min:g})", value
        )


class SelfConsistency(Check):
    """Ask the same model `samples - 1` more times at `temperature`; the share of samples whose
    final answer (last number, else the normalised text) agrees must reach `min_agreement`."""

    type: Literal["self_consistency"] = "self_consistency"
    samples: int = Field(3, ge=2, le=16)
    temperature: float = 0.7
    min_agreement: float = 0.6
    calls_models: ClassVar[bool] = True

    async def run(self, answer: Answer) -> CheckResult:
        if answer.model is None:
            return self.verdict(False, "no model to sample from")
        import asyncio
        from dataclasses import replace

        extra = replace(answer.request, temperature=self.temperature, seed=None, logprobs=False)
        others = await asyncio.gather(
            *(answer.model.generate(extra) for _ in range(self.samples - 1)),
            return_exceptions=True,
        )
        done = [o for o in others if isinstance(o, Completion)]
        cost = sum(o.cost_usd or 0.0 for o in done)
        key = _final_answer(answer.text)
        agree = (1 + sum(_final_answer(o.text) == key for o in done)) / self.samples
        passed = agree >= self.min_agreement
        reason = f"samples disagree ({agree:.0%} agree < {self.min_agreement:.0%})"
        return CheckResult(self.name, passed, "" if passed else reason, agree, cost)


class Judge(Check):
    """A third model grades the answer 0-10 (openparity's judge prompt); pass at `min_score`."""

    type: Literal["judge"] = "judge"
    model: str
    min_score: float = 7.0
    rubric: str = "correct, complete, safe and responsive to the request"
    calls_models: ClassVar[bool] = True

    async def run(self, answer: Answer) -> CheckResult:
        from openparity.bench.judge import grade

        judge = _judge_model(self.model)
        try:
            result = await grade(
                judge,
                rubric=self.rubric,
                question=json.dumps(list(answer.request.messages), ensure_ascii=False),
                reference="",
                answer=answer.text,
            )
        except OpenparityError as exc:
            return self.verdict(False, f"judge failed ({exc.one_line()[:120]})")
        passed = result.score >= self.min_score
        reason = f"judge scored {result.score:g} < {self.min_score:g}"
        return CheckResult(
            self.name,
            passed,
            "" if passed else reason,
            result.score,
            result.completion.cost_usd or 0.0,
        )


class PythonCheck(Check):
    """The user's function `f(messages, answer_text)` returning a bool, or (bool, reason)."""

    type: Literal["python"] = "python"
    file: Path
    function: str = "check"

    @cached_property
    def _function(self) -> Any:
        from openparity.usercode import load_function

        return load_function(self.file, self.function, CheckConfigError, what="check")

    def check(self, answer: Answer) -> CheckResult:
        try:
            value = self._function(list(answer.request.messages), answer.text)
        except Exception as exc:
            return self.verdict(False, f"{self.function} raised {type(exc).__name__}: {exc}")
        passed, reason = value if isinstance(value, tuple) else (bool(value), "")
        return self.verdict(bool(passed), reason or f"{self.function} rejected the answer")


def _constrained(request: ChatRequest) -> bool:
    """Does the request ask for JSON output (decoded under a grammar or schema)?"""
    fmt = request.extra.get("response_format")
    return isinstance(fmt, dict) and fmt.get("type") in ("json_object", "json_schema")


def _offered_tools(request: ChatRequest) -> dict[str, dict[str, Any]]:
    """The request's tools (and legacy `functions`): name -> parameters schema."""
    offered: dict[str, dict[str, Any]] = {}
    tools, functions = request.extra.get("tools"), request.extra.get("functions")
    entries = (
        [t.get("function") for t in tools if isinstance(t, dict)] if isinstance(tools, list) else []
    )
    entries += functions if isinstance(functions, list) else []
    for function in entries:
        if isinstance(function, dict) and isinstance(function.get("name"), str):
            parameters = function.get("parameters")
            offered[function["name"]] = parameters if isinstance(parameters, dict) else {}
    return offered


def _short_json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)[:80]


def _bare_name(value: Any) -> Any:
    return {"type": value} if isinstance(value, str) else value


AnyCheck = Annotated[
    NonEmpty
    | NotTruncated
    | Refusal
    | JsonValid
    | ToolCallValid
    | Regex
    | Length
    | Repetition
    | Language
    | MeanLogprob
    | SelfConsistency
    | Judge
    | PythonCheck,
    Field(discriminator="type"),
    BeforeValidator(_bare_name),
]

DEFAULT_CHECKS: tuple[Check, ...] = (
    NonEmpty(),
    NotTruncated(),
    Refusal(),
    JsonValid(),
    ToolCallValid(),
)


async def run_checks(checks: list[Check], answer: Answer) -> list[CheckResult]:
    """Run checks in order, cheapest first as listed; stop at the first failure."""
    results = []
    for check in checks:
        if answer.partial and check.whole_answer:
            continue
        result = await check.run(answer)
        results.append(result)
        if not result.passed:
            break
    return results


def _last_user_text(request: ChatRequest) -> str:
    for message in reversed(request.messages):
        if message.get("role") == "user":
            content = message.get("content")
            if isinstance(content, str):
                return content
            return " ".join(p.get("text", "") for p in content or () if isinstance(p, dict))
    return ""


def _final_answer(text: str) -> str:
    from openparity.bench.extract import final_number

    number = final_number(text)
    return number if number is not None else " ".join(text.lower().split())[:200]


def _compile(pattern: str, flags: int = 0) -> re.Pattern[str]:
    try:
        return re.compile(pattern, flags)
    except re.error as exc:
        raise CheckConfigError(f"check pattern {pattern!r} is not a valid regex ({exc})") from None


_JUDGES: dict[str, ChatModel] = {}


def _judge_model(spec: str) -> ChatModel:
    """One open judge model per spec per process."""
    if spec not in _JUDGES:
        from openparity.models import open_model

        _JUDGES[spec] = open_model(spec)
    return _JUDGES[spec]
