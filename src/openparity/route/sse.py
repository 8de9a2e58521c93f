"""A streamed chat answer as server-sent events: the headers wait for the pre-commit point (so
they can name the answering model); a failure after it is an SSE error event, never a silent
cut."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Mapping
from typing import TYPE_CHECKING, Any

from fastapi.responses import Response, StreamingResponse

from openparity.models.types import StreamChunk
from openparity.route.drain import Drain, StreamCut
from openparity.route.outcome import AllTiersFailedError, RouteResult, StreamBrokenError
from openparity.route.responses import error_response, route_headers, usage
from openparity.route.wire_json import dumps

if TYPE_CHECKING:
    from openparity.route.cascade import HybridRouter


async def stream_response(
    router: HybridRouter,
    result: RouteResult,
    include_usage: bool,
    finish: Any,
    all_failed: Any,
    admission: Any,
    drain: Drain,
) -> Response:
    """Wait for the pre-commit point (so the headers can name the answering model), then send
    server-sent events. A failure after that is sent as an SSE error event, never a silent cut."""
    pieces = drain.until_cut(router.stream(result.request, result))
    try:
        first = await anext(pieces)
    except AllTiersFailedError as exc:
        return all_failed(result, admission, exc.message)
    except StopAsyncIteration:  # cannot happen: the router either yields or raises
        return all_failed(result, admission, "no answer")
    except StreamCut:
        result.error = "cut by shutdown"
        response = error_response(
            503,
            "the gateway is shutting down; retry on another replica",
            kind="server_error",
            code="shutting_down",
            headers=route_headers(result),
        )
        asyncio.get_running_loop().call_soon(finish, result, 503, admission)
        return response
    base = {
        "id": "chatcmpl-" + result.request_id,
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": result.attempts[-1].model,
    }
    sse = SseWriter(base, include_usage, logprobs=result.request.logprobs)

    async def events() -> AsyncIterator[bytes]:
        status = 200
        try:
            for event in sse.chunk(first):
                yield event
            try:
                async for chunk in pieces:
                    for event in sse.chunk(chunk):
                        yield event
            except StreamBrokenError as exc:
                status = 502
                error = {"message": exc.message, "type": "upstream_error", "code": "stream_broken"}
                yield sse_data({"error": error})
                return
            except StreamCut:
                status, result.error = 503, "cut by shutdown"
                message = (
                    f"the gateway is shutting down: this stream was cut after its"
                    f" {drain.seconds:g}s drain"
                )
                yield sse_data(
                    {"error": {"message": message, "type": "server_error", "code": "shutting_down"}}
                )
                return
            completion = result.completion
            for event in sse.end(completion.finish_reason if completion else "stop", result):
                yield event
        except BaseException:
            status = 499  # the client went away mid-stream
            raise
        finally:
            await pieces.aclose()
            finish(result, status, admission)

    return StreamingResponse(
        events(), media_type="text/event-stream", headers=route_headers(result)
    )


class SseWriter:
    """The server-sent events of one streamed answer. An upstream's own events are passed on
    with the gateway's id and model (tool-call deltas and unknown fields intact); text from
    other backends becomes content deltas. The finish and usage events are added only when the
    upstream's were not passed on; usage only when the client asked for it."""

    def __init__(self, base: dict[str, Any], include_usage: bool, *, logprobs: bool) -> None:
        self.base, self.include_usage, self.logprobs = base, include_usage, logprobs
        self.started = self.finished = self.usage_sent = False

    def chunk(self, chunk: StreamChunk) -> list[bytes]:
        if chunk.event is not None:
            return self._forward(chunk.event)
        if not chunk.text:
            return []
        delta = {"content": chunk.text} | ({} if self.started else {"role": "assistant"})
        self.started = True
        return [self._choice(delta)]

    def end(self, finish_reason: str, result: RouteResult) -> list[bytes]:
        events = [] if self.finished else [self._choice({}, finish_reason)]
        if self.include_usage and not self.usage_sent:
            events.append(sse_data(self.base | {"choices": [], "usage": usage(result)}))
        return [*events, b"data: [DONE]\n\n"]

    def _forward(self, event: Mapping[str, Any]) -> list[bytes]:
        choices = event.get("choices") or []
        if not choices and event.get("usage") is not None:
            if not self.include_usage:  # the gateway asked for it to cost the answer
                return []
            self.usage_sent = True
        if any(c.get("finish_reason") for c in choices):
            self.finished = True
        if not self.logprobs:
            choices = [{**c, "logprobs": None} if c.get("logprobs") else c for c in choices]
        self.started = True
        return [sse_data({**event, **self.base, "choices": choices})]

    def _choice(self, delta: dict[str, Any], finish_reason: str | None = None) -> bytes:
        choice = {"index": 0, "delta": delta, "finish_reason": finish_reason, "logprobs": None}
        return sse_data(self.base | {"choices": [choice]})


def sse_data(payload: dict[str, Any]) -> bytes:
    return b"data: " + dumps(payload).encode() + b"\n\n"
