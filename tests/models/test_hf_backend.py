"""The hf: backend: a transformers checkpoint behind the one model interface, batched."""

from __future__ import annotations

import pytest

from openparity.models import ChatRequest, LoglikelihoodRequest, open_model
from openparity.models.errors import UnknownModelError, UnsupportedCapabilityError
from openparity.models.spec import parse_spec

pytest.importorskip("transformers")

PROMPTS = ["What is 2 + 2?", "你好，请介绍一下你自己。", "Name a colour.", "Count to three."]


async def test_a_batch_gives_what_each_request_gives_alone(tiny_base):
    model = open_model(f"hf:{tiny_base}")
    requests = [ChatRequest.from_prompt(p, max_tokens=12) for p in PROMPTS]
    batched = await model.generate_batch(requests)  # left-padded, one generate call
    alone = [await model.generate(r) for r in requests]
    assert [c.text for c in batched] == [c.text for c in alone]
    assert [c.completion_tokens for c in batched] == [c.completion_tokens for c in alone]
    for completion in batched:
        assert completion.model == f"hf:{tiny_base}" and completion.prompt_tokens > 0
        assert completion.finish_reason in ("stop", "length")


async def test_logprobs_are_those_of_the_generated_tokens(tiny_base):
    model = open_model(f"hf:{tiny_base}")
    request = ChatRequest.from_prompt("Hi", max_tokens=6, logprobs=True, top_logprobs=3)
    completion = await model.generate(request)
    assert len(completion.logprobs) == completion.completion_tokens
    for token in completion.logprobs:
        assert token.logprob <= 0 and len(token.top) == 3
        assert token.logprob == pytest.approx(token.top[0][1])  # greedy: the top token
    joined = "".join(t.token for t in completion.logprobs)
    assert joined.startswith(completion.text) or completion.text.startswith(joined[:1])


async def test_loglikelihood_is_greedy_exactly_when_greedy_decoding_gives_it(tiny_base):
    model = open_model(f"hf:{tiny_base}")
    greedy = await model.generate(ChatRequest.from_prompt("Hi", max_tokens=4))
    results = await model.loglikelihood(
        [LoglikelihoodRequest("The answer is", " four"), LoglikelihoodRequest("你好", "世界")]
    )
    assert all(r.logprob < 0 and r.n_tokens >= 1 for r in results)
    assert greedy.text is not None


async def test_a_chat_reply_is_scored_as_the_chat_template_writes_it(tiny_base):
    """messages= scores the assistant turn, end-of-turn marker included, after the prompt the
    model is generated from: the same number as the rendered text scored plainly."""
    import transformers

    tokenizer = transformers.AutoTokenizer.from_pretrained(tiny_base)
    messages = ({"role": "system", "content": "简短回答。"}, {"role": "user", "content": "你好"})
    prompt = tokenizer.apply_chat_template(
        list(messages), add_generation_prompt=True, tokenize=False
    )
    model = open_model(f"hf:{tiny_base}")
    chat, plain, bare = await model.loglikelihood(
        [
            LoglikelihoodRequest("", "世界 hello", messages=messages),
            LoglikelihoodRequest(prompt, "世界 hello<|im_end|>"),
            LoglikelihoodRequest(prompt, "世界 hello"),
        ]
    )
    assert chat.logprob == pytest.approx(plain.logprob, abs=1e-4)
    assert chat.n_tokens == plain.n_tokens == bare.n_tokens + 1  # the end of the turn counts


async def test_stop_strings_cut_the_answer(tiny_base):
    model = open_model(f"hf:{tiny_base}")
    full = await model.generate(ChatRequest.from_prompt("Hi", max_tokens=16))
    assert len(full.text) >= 4  # the seeded tiny model runs to max_tokens
    stop = full.text[2:4]
    cut = await model.generate(ChatRequest.from_prompt("Hi", max_tokens=16, stop=[stop]))
    assert stop not in cut.text and full.text.startswith(cut.text)
    assert cut.finish_reason == "stop"


async def test_images_are_refused_with_one_line(tiny_base):
    model = open_model(f"hf:{tiny_base}")
    parts = [{"type": "image_url", "image_url": {"url": "data:image/png;base64,AA=="}}]
    with pytest.raises(UnsupportedCapabilityError, match="text messages only"):
        await model.generate(ChatRequest(messages=[{"role": "user", "content": parts}]))


def test_specs(tmp_path, tiny_base):
    assert parse_spec("hf:smollm2-135m").model == "smollm2-135m"
    assert parse_spec(f"hf:{tiny_base}").backend == "hf"
    assert parse_spec("hf:HuggingFaceTB/SmolLM2-135M-Instruct").model.startswith("Hugging")
    with pytest.raises(UnknownModelError, match="not a transformers checkpoint"):
        parse_spec(f"hf:{tmp_path}")
    with pytest.raises(UnknownModelError, match="checkpoint not found"):
        parse_spec("hf:./no/such/dir")
