"""The local backend on the real embedded SmolLM2-135M-Instruct (llama.cpp)."""

import math

import pytest

from openparity.models import ChatRequest, LoglikelihoodRequest, open_model
from openparity.models.errors import ModelCallError, ModelConfigError


@pytest.fixture(scope="module")
async def local():
    async with open_model("local:smollm2-135m") as model:
        yield model


async def test_generation_is_accounted(local):
    completion = await local.generate(ChatRequest.from_prompt("What is 2 + 2?", max_tokens=24))
    assert completion.text.strip()
    assert completion.model == "local:smollm2-135m"
    assert completion.prompt_tokens > 5 and 0 < completion.completion_tokens <= 24
    assert completion.finish_reason in {"stop", "length"}
    assert completion.latency_s > 0 and completion.cost_usd == 0.0


async def test_greedy_is_deterministic_and_max_tokens_truncates(local):
    request = ChatRequest.from_prompt("Write a long story about a dragon.", max_tokens=7)
    first, second = await local.generate(request), await local.generate(request)
    assert first.text == second.text
    assert first.finish_reason == "length" and first.completion_tokens == 7


@pytest.mark.slow
async def test_stop_sequences(local):
    request = ChatRequest.from_prompt("Count from 1 to 20, separated by commas.", max_tokens=64)
    unstopped = await local.generate(request)
    assert "5" in unstopped.text
    stopped = await local.generate(
        ChatRequest.from_prompt(
            "Count from 1 to 20, separated by commas.", max_tokens=64, stop=["5"]
        )
    )
    assert "5" not in stopped.text and stopped.finish_reason == "stop"


async def test_token_logprobs(local):
    completion = await local.generate(
        ChatRequest.from_prompt("Say hello.", max_tokens=6, logprobs=True, top_logprobs=3)
    )
    assert len(completion.logprobs) == completion.completion_tokens
    for token in completion.logprobs:
        assert token.logprob <= 0 and len(token.top) == 3
        # greedy decoding picks the most likely token
        assert token.logprob == pytest.approx(max(lp for _, lp in token.top), abs=1e-4)
    assert completion.mean_logprob < 0


async def test_chinese_and_other_scripts_round_trip(local):
    completion = await local.generate(
        ChatRequest.from_prompt("请用中文回答：一加一等于几？ Ответь по-русски.", max_tokens=16)
    )
    assert completion.prompt_tokens > 10 and completion.text.strip()


async def test_loglikelihood_is_a_distribution(local):
    context = "The capital of France is"
    a, b, greedy = await local.loglikelihood(
        [
            LoglikelihoodRequest(context, " Paris"),
            LoglikelihoodRequest(context, " a banana"),
            LoglikelihoodRequest(context, ""),
        ]
    )
    assert a.logprob > b.logprob and a.n_tokens == 1 and b.n_tokens == 2
    assert a.is_greedy and not b.is_greedy
    assert greedy.n_tokens == 0 and greedy.logprob == 0.0
    assert math.exp(a.logprob) < 1


async def test_loglikelihood_matches_generation_logprobs(local):
    """Both paths see the same model: the greedy answer's first token scores the same."""
    request = ChatRequest.from_prompt("Name a colour.", max_tokens=1, logprobs=True, top_logprobs=1)
    completion = await local.generate(request)
    template = local_template(local, request)
    [score] = await local.loglikelihood([LoglikelihoodRequest(template, completion.text)])
    assert score.is_greedy
    assert score.logprob == pytest.approx(completion.logprobs[0].logprob, abs=1e-3)


async def test_a_chat_reply_scores_as_generation_produced_it(local):
    """The model's own finished greedy reply, scored as the assistant turn of the same
    messages: every token (the end of turn too) is the greedy one, and the reply's tokens
    carry the log-probabilities generation reported."""
    messages = ({"role": "user", "content": "Say hello in one short sentence."},)
    request = ChatRequest(messages=list(messages), max_tokens=48, logprobs=True)
    completion = await local.generate(request)
    assert completion.finish_reason == "stop"
    [turn] = await local.loglikelihood(
        [LoglikelihoodRequest("", completion.text, messages=messages)]
    )
    reply = sum(token.logprob for token in completion.logprobs)
    assert turn.is_greedy and turn.n_tokens == len(completion.logprobs) + 1
    assert reply - 1.0 < turn.logprob <= reply + 1e-3  # plus the end of turn's log-probability


def local_template(model, request):
    """The exact prompt text llama.cpp builds from the chat messages (its Jinja chat template)."""
    from llama_cpp.llama_chat_format import Jinja2ChatFormatter

    llm = model._model().value
    formatter = Jinja2ChatFormatter(
        template=llm.metadata["tokenizer.chat_template"],
        eos_token="",
        bos_token="",
        add_generation_prompt=True,
    )
    return formatter(messages=list(request.messages)).prompt


async def test_prompt_longer_than_context_is_a_clear_error():
    async with open_model("local:smollm2-135m") as model:
        tiny = model.spec.__class__(**{**model.spec.__dict__, "n_ctx": 128})
        async with open_model(tiny) as small:
            with pytest.raises(ModelCallError, match="context window"):
                await small.generate(ChatRequest.from_prompt("word " * 400, max_tokens=4))


async def test_batch_keeps_order_and_isolates_failures(local):
    requests = [ChatRequest.from_prompt(f"Say the number {i}.", max_tokens=4) for i in range(4)]
    seen = []
    results = await local.generate_batch(
        requests, concurrency=2, on_result=lambda i, r: seen.append(i)
    )
    assert sorted(seen) == [0, 1, 2, 3]
    singles = [await local.generate(r) for r in requests]
    assert [r.text for r in results] == [s.text for s in singles]


async def test_corrupt_gguf_is_a_clear_error(tmp_path):
    bad = tmp_path / "broken.gguf"
    bad.write_bytes(b"GGUF" + b"\0" * 64)
    async with open_model(f"local:{bad}") as model:
        with pytest.raises(ModelConfigError, match="could not load"):
            await model.generate(ChatRequest.from_prompt("hi", max_tokens=1))


async def test_a_cancelled_generation_stops_at_the_next_token(local):
    """Ctrl-C or a client gone: the caller stops waiting, and llama.cpp stops generating at the
    next token instead of finishing 1,500 tokens that nobody reads (the model's one worker is
    free again almost at once)."""
    import asyncio
    import contextlib
    import time

    story = ChatRequest.from_prompt(
        "Write a very long story about a cat, chapter by chapter.", max_tokens=1500
    )
    running = asyncio.ensure_future(local.generate(story))
    await asyncio.sleep(1.0)
    running.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await running
    started = time.monotonic()
    await local.generate(ChatRequest.from_prompt("Hi", max_tokens=2))
    assert time.monotonic() - started < 10  # the rest of 1,500 tokens takes about a minute
