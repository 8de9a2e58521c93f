"""The response cache wraps any model: a repeated request is answered from the cache, with
its logprobs, whether the cache is a dict or the run store's SQLite table."""

from __future__ import annotations

from openparity.bench.store import RunStore
from openparity.models import ChatRequest, open_model
from openparity.models.cache import CachedModel
from openparity.models.types import Completion, TokenLogprob


class DictCache(dict):
    def cached(self, key):
        return self.get(key)

    def cache(self, key, completion):
        self[key] = completion


async def test_repeated_requests_reach_the_model_once(stub, tmp_path):
    stub.record = True
    with RunStore(tmp_path / "runs.sqlite") as store:
        for cache in (DictCache(), store):
            stub.requests.clear()
            async with CachedModel(open_model(f"openai:m@{stub.base_url}"), cache) as model:
                request = ChatRequest.from_prompt("你好", max_tokens=8)
                first, again = await model.generate(request), await model.generate(request)
                other = await model.generate(ChatRequest.from_prompt("hello", max_tokens=8))
            assert first == again and other.text
            assert len(stub.requests) == 2  # the repeat never reached the server


def test_completions_round_trip_through_the_store_with_logprobs(tmp_path):
    completion = Completion(
        "答",
        "stop",
        3,
        1,
        0.1,
        "m",
        0.0,
        logprobs=(TokenLogprob("答", -0.25, (("答", -0.25), ("是", -1.5))),),
    )
    with RunStore(tmp_path / "runs.sqlite") as store:
        store.cache("k", completion)
        assert store.cached("k") == completion and store.cached("missing") is None
