"""A seeded fuzz of a running gateway: thousands of malformed and extreme bodies and headers
(wrong types everywhere, extreme numbers, NaN, deep nesting, broken UTF-8, truncated JSON,
junk keys and content types), sent concurrently with the real HTTP stack. Every answer is a
non-5xx with an OpenAI-style JSON error (or a real answer), no traceback ever reaches a client,
and the gateway still answers good requests afterwards."""

from __future__ import annotations

import asyncio
import json
import random

import aiohttp
import pytest

from tests.route.gateway import running_gateway

CASES = 3000
SEED = 20261206

WEIRD_VALUES = [
    None,
    True,
    False,
    0,
    -1,
    1,
    2**63,
    -(2**63),
    10**40,
    1e308,
    -1e308,
    1e-320,
    0.5,
    "",
    "x" * 5000,
    "你好",
    "\u202e\u0000",
    "\ud800",
    [],
    {},
    [None],
    {"": None},
    [[[]]],
    {"type": "text"},
    {"role": "user"},
    "Bearer",
    "NaN",
    3.14,
]
PARAMS = [
    "model",
    "messages",
    "max_tokens",
    "max_completion_tokens",
    "n",
    "temperature",
    "top_p",
    "stop",
    "seed",
    "logprobs",
    "top_logprobs",
    "stream",
    "stream_options",
    "tools",
    "tool_choice",
    "response_format",
    "functions",
    "presence_penalty",
    "frequency_penalty",
    "logit_bias",
    "user",
    "metadata",
    "input",
    "prompt",
]
GOOD = {"model": "openparity-hybrid", "messages": [{"role": "user", "content": "hi"}]}


def weird(rng: random.Random, depth: int = 0):
    roll = rng.random()
    if depth < 3 and roll < 0.15:
        return [weird(rng, depth + 1) for _ in range(rng.randint(0, 3))]
    if depth < 3 and roll < 0.3:
        return {
            rng.choice([*PARAMS, "role", "content", "type", "x"]): weird(rng, depth + 1)
            for _ in range(rng.randint(0, 3))
        }
    return rng.choice(WEIRD_VALUES)


def message(rng: random.Random):
    roll = rng.random()
    if roll < 0.4:
        return {
            "role": rng.choice(["user", "system", "assistant", "tool", "xx", 5]),
            "content": weird(rng),
        }
    if roll < 0.6:
        return {
            "role": "user",
            "content": [
                {
                    "type": rng.choice(["text", "image_url", "input_audio", "???", None]),
                    "text": weird(rng),
                    "image_url": weird(rng),
                }
            ],
        }
    return weird(rng)


def body(rng: random.Random) -> bytes:
    roll = rng.random()
    if roll < 0.08:
        return bytes(rng.randrange(256) for _ in range(rng.randint(0, 300)))
    if roll < 0.14:
        good = json.dumps(GOOD | {"max_tokens": 3}).encode()
        return good[: rng.randint(0, len(good) - 1)]
    if roll < 0.18:
        depth = rng.choice([70, 900, 5000, 50_000])
        return b'{"messages": ' + b"[" * depth + b"]" * depth + b"}"
    if roll < 0.22:
        constant = rng.choice([b"NaN", b"Infinity", b"-Infinity", b"1e999"])
        return (
            b'{"messages": [{"role": "user", "content": "hi"}], "temperature": ' + constant + b"}"
        )
    data = dict(GOOD) if rng.random() < 0.5 else {}
    if rng.random() < 0.7:
        data["messages"] = [message(rng) for _ in range(rng.randint(0, 3))]
    for _ in range(rng.randint(1, 5)):
        data[rng.choice(PARAMS)] = weird(rng)
    if rng.random() < 0.5:
        data["max_tokens"] = rng.choice([3, 1, None, -5, 2**31])
    text = json.dumps(data, ensure_ascii=rng.random() < 0.5, allow_nan=True)
    return text.encode("utf-8", "surrogatepass")


def headers(rng: random.Random, key: str) -> dict[str, str]:
    out = {"Content-Type": rng.choice(["application/json", "text/plain", "", "application/x"])}
    roll = rng.random()
    if roll < 0.85:
        out["Authorization"] = f"Bearer {key}"
    elif roll < 0.9:
        out["Authorization"] = "Bearer " + "é" * rng.randint(1, 300)
    elif roll < 0.95:
        out["Authorization"] = rng.choice(["Basic Zm9v", "Bearer", "bearer  " + key, key])
    if rng.random() < 0.1:
        out["X-Junk"] = "x" * rng.randint(0, 2000)
    return out


@pytest.fixture(scope="module")
def gateway(tmp_path_factory):
    from openparity.testing.stub_server import StubServer

    with StubServer(text="open answer") as open_, StubServer(text="closed") as closed:
        config = {
            "tiers": [
                {
                    "model": f"openai:open@{open_.base_url}",
                    "precommit_tokens": 1,
                    "checks": ["non_empty", "refusal", "json", "tool_call"],
                },
                {"model": f"openai:closed@{closed.base_url}", "checks": ["non_empty"]},
            ],
            "max_request_bytes": 200_000,
        }
        with running_gateway(tmp_path_factory.mktemp("fuzz"), config) as running:
            yield running


async def fire(base_url: str, key: str, cases: list[tuple[str, bytes, dict[str, str]]]):
    results = []
    limit = asyncio.Semaphore(32)
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as session:

        async def one(path: str, data: bytes, head: dict[str, str]):
            async with limit:
                try:
                    async with session.post(base_url + path, data=data, headers=head) as answer:
                        results.append((answer.status, await answer.read(), data))
                except aiohttp.ClientError as exc:  # the server dropped the connection
                    results.append((599, repr(exc).encode(), data + repr(head).encode()))

        await asyncio.gather(*(one(*case) for case in cases))
    return results


def test_thousands_of_malformed_requests_get_no_5xx_and_no_traceback(gateway):
    base_url, key, path = gateway
    rng = random.Random(SEED)
    paths = ["/chat/completions"] * 8 + ["/embeddings", "/completions"]
    cases = [(rng.choice(paths), body(rng), headers(rng, key)) for _ in range(CASES)]
    results = asyncio.run(fire(base_url, key, cases))
    server_errors = [(s, a[:200], d[:200]) for s, a, d in results if s >= 500]
    assert not server_errors, server_errors[:5]
    for status, answer, _ in results:
        assert b"Traceback" not in answer
        if status >= 400:
            error = json.loads(answer)["error"]
            assert isinstance(error["message"], str) and error["message"]
    assert {s for s, _, _ in results} >= {200, 400, 401}
    assert "Traceback" not in (path.parent / "gateway.log").read_text(encoding="utf-8")
    good = asyncio.run(
        fire(
            base_url,
            key,
            [("/chat/completions", json.dumps(GOOD).encode(), {"Authorization": f"Bearer {key}"})],
        )
    )
    assert good[0][0] == 200
