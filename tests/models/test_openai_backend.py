"""The `openai` backend: the real SDK against a real llama.cpp server and a fault-injection stub."""

import time

import pytest

from openparity.models import ChatRequest, LoglikelihoodRequest, open_model
from openparity.models.errors import (
    BackendUnavailableError,
    MissingAPIKeyError,
    ModelCallError,
    UnknownModelError,
    UnsupportedCapabilityError,
)
from openparity.models.local_server import free_port
from openparity.models.spec import parse_spec, with_overrides


async def test_real_server_matches_the_embedded_model(llama_server):
    request = ChatRequest.from_prompt("What is the capital of France?", max_tokens=16)
    # llama-cpp-python's server defaults to repeat_penalty 1.1; the in-process call uses 1.0.
    server_request = ChatRequest.from_prompt(
        "What is the capital of France?", max_tokens=16, extra={"repeat_penalty": 1.0}
    )
    async with open_model(llama_server.spec) as remote, open_model("local:smollm2-135m") as local:
        over_http = await remote.generate(server_request)
        in_process = await local.generate(request)
    assert over_http.text == in_process.text  # same weights, same greedy decoding
    assert over_http.prompt_tokens == in_process.prompt_tokens
    assert over_http.completion_tokens == in_process.completion_tokens
    assert over_http.model == llama_server.spec and over_http.cost_usd is None  # unpriced


async def test_real_server_batch_with_logprobs_and_chinese(llama_server):
    requests = [
        ChatRequest.from_prompt(p, max_tokens=8, logprobs=True, top_logprobs=2)
        for p in ("Say hi.", "你好，请介绍一下你自己。", "2+2=?")
    ]
    async with open_model(llama_server.spec) as model:
        results = await model.generate_batch(requests, concurrency=3)
    for completion in results:
        assert completion.text and len(completion.logprobs) == completion.completion_tokens


async def test_models_yaml_price_applies_to_real_token_counts(llama_server, tmp_path):
    (tmp_path / "models.yaml").write_text(
        "models:\n  open:\n    backend: openai\n"
        f"    model: {llama_server.model}\n    base_url: {llama_server.base_url}\n"
        "    price: {input: 1.0, output: 3.0}\n"
    )
    async with open_model("open") as model:
        c = await model.generate(ChatRequest.from_prompt("Hi", max_tokens=5))
    assert c.cost_usd == pytest.approx((c.prompt_tokens * 1.0 + c.completion_tokens * 3.0) / 1e6)


async def test_dead_server_is_a_clear_error():
    spec = with_overrides(parse_spec(f"openai:m@http://127.0.0.1:{free_port()}/v1"), max_retries=1)
    async with open_model(spec) as model:
        with pytest.raises(BackendUnavailableError) as info:
            await model.generate(ChatRequest.from_prompt("hi"))
    assert "cannot reach" in info.value.one_line() and "start the server" in info.value.one_line()


async def test_missing_key_for_hosted_model():
    with pytest.raises(MissingAPIKeyError, match=r"needs \$OPENAI_API_KEY"):
        open_model("openai:gpt-4o")


async def test_retry_after_is_honoured(stub):
    stub.script(
        {"status": 429, "headers": {"Retry-After": "0.4"}},
        {"status": 503, "headers": {"retry-after-ms": "300"}},
    )
    async with open_model(f"openai:stub@{stub.base_url}") as model:
        started = time.perf_counter()
        completion = await model.generate(ChatRequest.from_prompt("hi"))
        waited = time.perf_counter() - started
    assert completion.text == "The answer is 4."
    assert len(stub.requests) == 3
    assert waited >= 0.7  # 0.4 s + 0.3 s, as the server asked


async def test_retries_run_out_into_a_clear_error(stub):
    stub.script(*[{"status": 500}] * 3)
    spec = with_overrides(parse_spec(f"openai:stub@{stub.base_url}"), max_retries=2)
    async with open_model(spec) as model:
        model.retry = model.retry.__class__(max_retries=2, initial_delay_s=0.01)
        with pytest.raises(ModelCallError, match="HTTP 500 after 2 retries"):
            await model.generate(ChatRequest.from_prompt("hi"))
    assert len(stub.requests) == 3


@pytest.mark.parametrize(
    ("status", "error", "fragment"),
    [
        (401, MissingAPIKeyError, "rejected the key"),
        (404, UnknownModelError, "has no model 'stub'"),
        (400, ModelCallError, "refused the request: HTTP 400"),
    ],
)
async def test_non_retryable_status_fails_at_once(stub, status, error, fragment):
    stub.script({"status": status})
    async with open_model(f"openai:stub@{stub.base_url}") as model:
        with pytest.raises(error, match=fragment):
            await model.generate(ChatRequest.from_prompt("hi"))
    assert len(stub.requests) == 1


async def test_read_timeout_is_a_clear_error(stub):
    stub.script({"delay_s": 2.0}, {"delay_s": 2.0})
    spec = with_overrides(parse_spec(f"openai:stub@{stub.base_url}"), timeout_s=0.3, max_retries=1)
    async with open_model(spec) as model:
        with pytest.raises(ModelCallError, match=r"did not answer within 0\.3s"):
            await model.generate(ChatRequest.from_prompt("hi"))


async def test_batch_records_failures_without_losing_the_rest(stub):
    stub.script({"status": 400})
    async with open_model(f"openai:stub@{stub.base_url}") as model:
        results = await model.generate_batch(
            [ChatRequest.from_prompt(str(i)) for i in range(5)], concurrency=1
        )
    assert isinstance(results[0], ModelCallError)
    assert all(r.text == "The answer is 4." for r in results[1:])


async def test_bounded_concurrency(stub):
    stub.script(*[{"delay_s": 0.2}] * 6)
    async with open_model(f"openai:stub@{stub.base_url}") as model:
        started = time.perf_counter()
        await model.generate_batch([ChatRequest.from_prompt("x")] * 6, concurrency=2)
        elapsed = time.perf_counter() - started
    assert elapsed >= 0.6  # 6 slow answers, 2 at a time: at least 3 rounds


async def test_request_parameters_reach_the_server(stub):
    async with open_model(f"openai:stub@{stub.base_url}") as model:
        await model.generate(
            ChatRequest.from_prompt(
                "hi",
                system="be brief",
                max_tokens=9,
                stop=["\n"],
                seed=3,
                extra={"response_format": {"type": "json_object"}},
            )
        )
    body = stub.requests[0]["body"]
    assert body["messages"][0] == {"role": "system", "content": "be brief"}
    assert (body["max_tokens"], body["stop"], body["seed"]) == (9, ["\n"], 3)
    assert body["response_format"] == {"type": "json_object"}


async def test_a_chat_reply_likelihood_is_refused_not_approximated(stub):
    """The completions endpoint cannot apply the chat template: no number is made up."""
    async with open_model(f"openai:stub@{stub.base_url}") as model:
        asked = ({"role": "user", "content": "hi"},)
        with pytest.raises(UnsupportedCapabilityError, match="chat template"):
            await model.loglikelihood([LoglikelihoodRequest("", "hello", messages=asked)])
    assert not stub.requests


async def test_echo_loglikelihood_in_vllm_format(stub):
    async with open_model(f"openai:stub@{stub.base_url}") as model:
        [score] = await model.loglikelihood([LoglikelihoodRequest("one two", " three four")])
    # stub: token i scores -i/10; " three" and " four" are tokens 2 and 3
    assert score.n_tokens == 2 and score.logprob == pytest.approx(-0.5)
    assert stub.requests[0]["body"]["echo"] is True
