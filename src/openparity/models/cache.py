"""A model whose answers go through a response cache: a repeated request (a resumed run, a
rerun, a regenerated dataset) costs nothing. The cache is anything with `cached(key)` and
`cache(key, completion)`: the run store is one."""

from __future__ import annotations

from typing import Protocol

from openparity.models.base import ChatModel
from openparity.models.types import ChatRequest, Completion


class ResponseCache(Protocol):
    def cached(self, key: str) -> Completion | None: ...

    def cache(self, key: str, completion: Completion) -> None: ...


class CachedModel(ChatModel):
    """`model`, answering repeated requests from `cache` (keyed by model and request)."""

    def __init__(self, model: ChatModel, cache: ResponseCache) -> None:
        super().__init__(model.spec)
        self.inner, self.cache = model, cache

    async def generate(self, request: ChatRequest) -> Completion:
        key = request.cache_key(self.inner.identity)
        hit = self.cache.cached(key)
        if hit is not None:
            return hit
        completion = await self.inner.generate(request)
        self.cache.cache(key, completion)
        return completion

    async def aclose(self) -> None:
        await self.inner.aclose()
