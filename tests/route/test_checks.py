"""Quality checks on real answers (English, Chinese, JSON), the breaker, keys and the config."""

from __future__ import annotations

import pytest
from pydantic import TypeAdapter

from openparity.models import open_model
from openparity.models.types import ChatRequest, Completion, TokenLogprob
from openparity.route.checks import Answer, AnyCheck, run_checks
from openparity.route.config import GatewayConfigError, load_gateway_config, save_gateway_config
from openparity.route.keys import GatewayKeyError, KeyRing, add_key, revoke_key
from openparity.route.resilience import CircuitBreaker
from openparity.textsignals import dominant_script

CHECKS = TypeAdapter(list[AnyCheck])


def answer(text, prompt="hello", finish="stop", logprobs=None, **extra) -> Answer:
    request = ChatRequest.from_prompt(prompt, extra=extra)
    return Answer(request, Completion(text, finish, 3, 3, 0.0, "m", None, logprobs))


async def verdict(spec, *args, **kwargs):
    (check,) = CHECKS.validate_python([spec])
    (result,) = await run_checks([check], answer(*args, **kwargs))
    return result


@pytest.mark.parametrize(
    "spec, text, passed",
    [
        ("non_empty", "  ", False),
        ("non_empty", "4", True),
        ("refusal", "I'm sorry, but I can't help with that.", False),
        ("refusal", "抱歉，我无法回答这个问题。", False),
        ("refusal", "Sorry for the delay: the answer is 4.", True),
        ({"type": "regex", "pattern": r"^\d+$", "full": True}, "42", True),
        ({"type": "regex", "pattern": r"^\d+$", "full": True}, "about 42", False),
        ({"type": "length", "max_chars": 5}, "too long an answer", False),
        ({"type": "repetition"}, "the cat sat on the mat. " * 10, False),
        ({"type": "repetition"}, "A varied answer that explains how two and two make four.", True),
    ],
)
async def test_text_checks(spec, text, passed):
    result = await verdict(spec, text)
    assert result.passed is passed
    assert bool(result.reason) is not passed


async def test_truncation_is_caught():
    assert not (await verdict("not_truncated", "The answer is", finish="length")).passed


async def test_an_answer_cut_at_the_clients_own_max_tokens_is_not_truncated():
    """The client asked for 3 tokens and got 3: any tier would stop there, so no fallback;
    without a max_tokens from the client, a cut is the tier's and fails."""
    (check,) = CHECKS.validate_python(["not_truncated"])
    cut = Completion("The answer is", "length", 3, 3, 0.0, "m", None)
    asked = ChatRequest.from_prompt("hello", max_tokens=3)
    (result,) = await run_checks([check], Answer(asked, cut))
    assert result.passed
    unasked = ChatRequest.from_prompt("hello", max_tokens=None)
    (result,) = await run_checks([check], Answer(unasked, cut))
    assert not result.passed


async def test_language_check_chinese_in_chinese_out():
    assert not (await verdict("language", "The weather is fine.", "今天天气怎么样？")).passed
    assert (await verdict("language", "今天天气很好，适合散步。", "今天天气怎么样？")).passed
    assert (await verdict("language", "Bonjour", "hello")).passed  # Latin requests pass
    assert dominant_script("東京はどうですか") == "Kana"


async def test_json_check_follows_the_requests_response_format():
    schema = {"type": "object", "required": ["total"], "properties": {"total": {"type": "number"}}}
    fmt = {"type": "json_schema", "json_schema": {"name": "x", "schema": schema}}
    assert (await verdict("json", "not json", response_format={"type": "text"})).passed
    assert not (await verdict("json", "not json", response_format={"type": "json_object"})).passed
    bad = await verdict("json", '{"total": "12"}', response_format=fmt)
    assert not bad.passed and "schema" in bad.reason
    assert (await verdict("json", '{"total": 12, "货币": "人民币"}', response_format=fmt)).passed


async def test_mean_logprob_check_needs_logprobs():
    confident = (TokenLogprob("4", -0.1), TokenLogprob(".", -0.3))
    assert (await verdict({"type": "mean_logprob", "min": -1}, "4.", logprobs=confident)).passed
    unsure = (TokenLogprob("4", -2.5), TokenLogprob(".", -0.5))
    result = await verdict({"type": "mean_logprob", "min": -1}, "4.", logprobs=unsure)
    assert not result.passed and result.score == pytest.approx(-1.5)
    assert not (await verdict({"type": "mean_logprob"}, "4.")).passed


async def test_user_python_check(tmp_path):
    file = tmp_path / "mycheck.py"
    file.write_text("def check(messages, text):\n    return ('ok' in text, 'no ok')\n")
    spec = {"type": "python", "file": str(file)}
    assert (await verdict(spec, "ok then")).passed
    result = await verdict(spec, "nope")
    assert not result.passed and result.reason == "no ok"


async def test_self_consistency_and_judge_call_real_servers(stub):
    stub.script({"text": "The answer is 5."}, {"text": "So 4."})
    async with open_model(f"openai:stub@{stub.base_url}") as model:
        (check,) = CHECKS.validate_python([{"type": "self_consistency", "samples": 3}])
        base = answer("It is 4.")
        base.model = model
        result = await check.run(base)
    assert result.score == pytest.approx(2 / 3) and result.passed
    stub.script({"text": "Reasons. Score: 3"})
    judge = await verdict({"type": "judge", "model": f"openai:judge@{stub.base_url}"}, "4")
    assert not judge.passed and judge.score == 3


def test_breaker_cycle_with_a_clock():
    now = [0.0]
    breaker = CircuitBreaker(failures=2, cooldown_s=10, clock=lambda: now[0])
    breaker.record_failure()
    assert breaker.allow()
    breaker.record_failure()
    assert breaker.state == "open" and not breaker.allow()
    now[0] = 10.0
    assert breaker.state == "half_open"
    assert breaker.allow() and not breaker.allow()  # one probe at a time
    breaker.record_failure()  # the probe failed: open again
    assert breaker.state == "open" and breaker.retry_in() == pytest.approx(10)
    now[0] = 20.0
    assert breaker.allow()
    breaker.record_success()
    assert breaker.state == "closed"
    breaker.hold(5)
    assert breaker.state == "open" and breaker.retry_in() == pytest.approx(5)


def test_keys_are_stored_hashed_and_revocable(tmp_path):
    ledger = tmp_path / "ledger.sqlite"
    secret = add_key(ledger, "team-a", rate_per_s=2, budget_usd=1.0)
    assert secret.startswith("op-") and secret.encode() not in ledger.read_bytes()
    with pytest.raises(GatewayKeyError, match="already exists"):
        add_key(ledger, "team-a")
    ring = KeyRing(ledger)
    key = ring.find(secret)
    assert key is not None and ring.find("op-other") is None
    assert key.take() == 0 and key.take() == 0 and key.take() > 0  # burst of 2, then wait
    key.spent_usd = 1.0
    assert key.over_budget
    revoke_key(ledger, "team-a")
    ring.reload()
    assert ring.find(secret) is None


def test_config_round_trips_and_reports_mistakes(tmp_path):
    path = tmp_path / "gateway.yaml"
    path.write_text(
        "tiers:\n  - model: local:smollm2-135m\n"
        "    checks: [refusal, {type: mean_logprob, min: -1}]\n  - model: openai:gpt-4o\n",
        encoding="utf-8",
    )
    config = load_gateway_config(path)
    assert [c.name for c in config.tiers[0].checks] == ["refusal", "mean_logprob"]
    save_gateway_config(config, path)
    assert load_gateway_config(path) == config
    path.write_text("tiers:\n  - model: x\n    checks: [telepathy]\n", encoding="utf-8")
    with pytest.raises(GatewayConfigError, match=r"tiers\.0\.checks\.0"):
        load_gateway_config(path)


TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "search",
            "parameters": {
                "type": "object",
                "properties": {"q": {"type": "string"}},
                "required": ["q"],
            },
        },
    },
]


def tool_answer(calls, prompt="查一下天气", **extra) -> Answer:
    request = ChatRequest.from_prompt(prompt, extra={"tools": TOOLS, **extra})
    tool_calls = tuple(
        {"id": f"c{i}", "type": "function", "function": {"name": n, "arguments": a}}
        for i, (n, a) in enumerate(calls)
    )
    return Answer(
        request, Completion("", "tool_calls", 3, 3, 0.0, "m", None, tool_calls=tool_calls)
    )


@pytest.mark.parametrize(
    "calls, extra, passed",
    [
        ([("search", '{"q": "天气"}')], {}, True),
        ([("search", '{"q": "天气"}'), ("search", '{"q": 1}')], {}, False),  # the second is bad
        ([("search", '{"q": "x"}')], {"tool_choice": "none"}, False),
        (
            [("search", '{"q": "x"}')],
            {"tool_choice": {"type": "function", "function": {"name": "other"}}},
            False,
        ),
        ([], {"tool_choice": "required"}, False),
        ([], {"tool_choice": "auto"}, True),
        ([("search", "")], {}, False),
    ],
)
async def test_tool_call_check(calls, extra, passed):
    (check,) = CHECKS.validate_python(["tool_call"])
    (result,) = await run_checks([check], tool_answer(calls, **extra))
    assert result.passed is passed, result.reason


async def test_text_checks_pass_a_tool_call_answer():
    """A tool call has no text: refusal, language, JSON and non-empty checks do not judge it."""
    checks = CHECKS.validate_python(
        ["non_empty", "refusal", "language", {"type": "json", "always": True}]
    )
    results = await run_checks(checks, tool_answer([("search", '{"q": "天气"}')]))
    assert [r.passed for r in results] == [True] * 4


async def test_mean_logprob_does_not_judge_grammar_constrained_json():
    """Under a JSON grammar the tokens' probabilities measure the mask, not the model's
    confidence: the embedded model's parse() answers average about -2.9."""
    low = [TokenLogprob("{", -2.9), TokenLogprob("}", -2.9)]
    structured = {"type": "json_schema", "json_schema": {"name": "x", "schema": {}}}
    assert (
        await verdict(
            {"type": "mean_logprob", "min": -1.2}, "{}", logprobs=low, response_format=structured
        )
    ).passed
    assert not (
        await verdict({"type": "mean_logprob", "min": -1.2}, "free text", logprobs=low)
    ).passed
