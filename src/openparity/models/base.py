"""The one model interface every backend implements, and batching with bounded concurrency."""

from __future__ import annotations

import abc
import asyncio
from collections.abc import AsyncIterator, Callable, Sequence

from openparity.errors import OpenparityError
from openparity.models.errors import UnsupportedCapabilityError
from openparity.models.spec import ModelSpec
from openparity.models.types import (
    ChatRequest,
    Completion,
    Loglikelihood,
    LoglikelihoodRequest,
    StreamChunk,
)

BatchResult = Completion | OpenparityError
"""A batch never raises for one bad item: each slot holds a Completion or the error it got."""


class ChatModel(abc.ABC):
    """A model that answers chat requests. Open one with `openparity.models.open_model`."""

    def __init__(self, spec: ModelSpec) -> None:
        self.spec = spec
        self.identity = spec.identity()  # the name + a weights digest for local checkpoints

    @property
    def name(self) -> str:
        return self.spec.name

    @abc.abstractmethod
    async def generate(self, request: ChatRequest) -> Completion:
        """Answer one request; raises an OpenparityError subclass on failure."""

    async def stream(self, request: ChatRequest) -> AsyncIterator[StreamChunk]:
        """Yield the answer as it is produced; the last chunk carries finish_reason and usage.

        Backends that cannot stream yield the whole answer as one chunk.
        """
        completion = await self.generate(request)
        yield StreamChunk(completion.text)
        yield StreamChunk(
            "",
            finish_reason=completion.finish_reason,
            usage=(completion.prompt_tokens, completion.completion_tokens),
        )

    async def loglikelihood(self, requests: Sequence[LoglikelihoodRequest]) -> list[Loglikelihood]:
        """log P(continuation | context) for each request, where the backend exposes it."""
        raise UnsupportedCapabilityError(
            f"{self.name} cannot score prompt log-likelihoods",
            hint="use generative scoring, or a local model / a server that returns echo logprobs",
        )

    async def iter_batch(
        self, requests: Sequence[ChatRequest], *, concurrency: int | None = None
    ) -> AsyncIterator[tuple[int, BatchResult]]:
        """Yield (index, result) as each request finishes, at most `concurrency` in flight.

        Only `concurrency` tasks exist at any time, so a batch of a million requests costs
        a million small objects, not a million pending coroutines.
        """
        limit = max(1, concurrency or self.spec.max_concurrency)
        pending: set[asyncio.Task[tuple[int, BatchResult]]] = set()
        todo = iter(enumerate(requests))
        try:
            while True:
                for index, request in todo:
                    pending.add(asyncio.ensure_future(self._settle(index, request)))
                    if len(pending) >= limit:
                        break
                if not pending:
                    return
                done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                for task in done:
                    yield task.result()
        finally:
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.gather(*pending, return_exceptions=True)

    async def generate_batch(
        self,
        requests: Sequence[ChatRequest],
        *,
        concurrency: int | None = None,
        on_result: Callable[[int, BatchResult], None] | None = None,
    ) -> list[BatchResult]:
        """All results in request order; `on_result` is called as each one finishes."""
        results: list[BatchResult | None] = [None] * len(requests)
        async for index, result in self.iter_batch(requests, concurrency=concurrency):
            results[index] = result
            if on_result is not None:
                on_result(index, result)
        return results  # type: ignore[return-value]

    async def _settle(self, index: int, request: ChatRequest) -> tuple[int, BatchResult]:
        try:
            return index, await self.generate(request)
        except OpenparityError as exc:
            return index, exc

    async def aclose(self) -> None:  # noqa: B027 - optional hook, most backends hold nothing
        """Release connections or other resources (the model stays usable until then)."""

    async def __aenter__(self) -> ChatModel:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()
