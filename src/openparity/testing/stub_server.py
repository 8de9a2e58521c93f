"""A scripted, zero-latency OpenAI-compatible HTTP server on loopback.

Only for fault injection (429 with Retry-After, 5xx, 401, 404, slow answers, slow first token,
streams cut before [DONE], empty 200s, malformed JSON) and for measuring client overhead: it
answers instantly with a fixed completion unless told otherwise, streamed as server-sent events
when the request says `"stream": true`. It is a plain asyncio HTTP/1.1 server with keep-alive,
so it costs far less per request than any client. `fault_rate` injects random faults (seeded)
for load tests.

    with StubServer() as stub:                # in a background thread
        stub.script({"status": 429, "headers": {"Retry-After": "0.2"}})
        ... openai:stub@{stub.base_url} ...

    python -m openparity.testing.stub_server --port 9000   # in its own process
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import json
import random
import struct
import threading
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

_REASONS = {
    200: "OK",
    400: "Bad Request",
    401: "Unauthorized",
    404: "Not Found",
    429: "Too Many Requests",
    500: "Internal Server Error",
    503: "Service Unavailable",
}


class StubServer:
    """Answers /v1/chat/completions, /v1/completions (echo logprobs) and /v1/models.

    `script(*steps)` queues behaviours consumed one per request, then the default answer.
    A step is a dict of: "status" (int), "headers" (dict), "body" (JSON error body), "delay_s"
    (before answering), "text" (the answer; "" for an empty 200), "raw" (a 200 whose body is
    this string, not JSON), "first_token_delay_s", "event_delay_s", "cut_after" and
    "end_after" (streams: wait before the first token; wait between the later ones; drop the
    connection after N events; end the body cleanly after N events, so the events from N on,
    [DONE] included, are never sent), "tool_calls" (a list of
    {"name", "arguments"}: the answer calls them, streamed as argument pieces), "extra" (fields
    added to the body and to every streamed event), "message_extra" (added to the message or
    the first delta) and "choice_extra" (added to each choice, or to each streamed content
    event's choice: `logprobs`, say). `n` in the request gives n choices; /v1/embeddings
    answers with small deterministic vectors.
    """

    FAULTS: tuple[Mapping[str, Any], ...] = (
        {"status": 500},
        {"status": 429, "headers": {"Retry-After": "0"}},
        {"text": ""},
        {"raw": "{not json"},
        {"status": 503},
    )

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        text: str = "The answer is 4.",
        *,
        fault_rate: float = 0.0,
        seed: int = 0,
    ) -> None:
        self.host, self.port, self.text = host, port, text
        self.fault_rate = fault_rate
        self._rng = random.Random(seed)
        self.requests: list[dict[str, Any]] = []
        self._steps: deque[Mapping[str, Any]] = deque()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.base_events.Server | None = None
        self._thread: threading.Thread | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._handlers: set[asyncio.Task[None]] = set()
        self.record = True

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}/v1"

    def script(self, *steps: Mapping[str, Any]) -> None:
        self._steps.extend(steps)

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, self.host, self.port, backlog=1024)
        self.port = self._server.sockets[0].getsockname()[1]

    async def serve_forever(self) -> None:
        await self.start()
        assert self._server is not None
        async with self._server:
            await self._server.serve_forever()

    def __enter__(self) -> StubServer:
        ready = threading.Event()

        def run() -> None:
            self._loop = asyncio.new_event_loop()
            self._loop.run_until_complete(self.start())
            ready.set()
            self._loop.run_forever()

        self._thread = threading.Thread(target=run, name="openai-stub", daemon=True)
        self._thread.start()
        ready.wait(10)
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._loop is None:
            return
        asyncio.run_coroutine_threadsafe(self.stop(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread:
            self._thread.join(5)
        self._loop.close()

    async def stop(self) -> None:
        """Stop listening and close every open connection."""
        if self._server is not None:
            self._server.close()
        for writer in list(self._writers):
            writer.close()
        for task in list(self._handlers):
            task.cancel()
        if self._server is not None:
            await self._server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        task = asyncio.current_task()
        if task is not None:
            self._handlers.add(task)
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                method, path, _ = lines[0].split(" ", 2)
                headers = {}
                for line in lines[1:]:
                    if ":" in line:
                        k, v = line.split(":", 1)
                        headers[k.strip().lower()] = v.strip()
                length = int(headers.get("content-length", "0"))
                raw = await reader.readexactly(length) if length else b""
                answer = await self._answer(method, path, raw, headers)
                if isinstance(answer, _Stream):
                    if not await self._stream(writer, answer):
                        return
                    continue
                status, extra_headers, body = answer
                payload = body.encode() if isinstance(body, str) else json.dumps(body).encode()
                out = [
                    f"HTTP/1.1 {status} {_REASONS.get(status, 'Status')}",
                    "content-type: application/json",
                    f"content-length: {len(payload)}",
                ]
                out += [f"{k}: {v}" for k, v in extra_headers.items()]
                writer.write(("\r\n".join(out) + "\r\n\r\n").encode() + payload)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            self._handlers.discard(task)  # type: ignore[arg-type]
            self._writers.discard(writer)
            writer.close()

    async def _stream(self, writer: asyncio.StreamWriter, answer: _Stream) -> bool:
        """Send an SSE answer with chunked encoding; False when it cut the connection."""
        writer.write(
            b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
            b"transfer-encoding: chunked\r\n\r\n"
        )
        for index, event in enumerate(answer.events):
            if index == 1 and answer.first_token_delay_s:
                await writer.drain()
                await asyncio.sleep(answer.first_token_delay_s)
            elif index > 1 and answer.event_delay_s:
                await writer.drain()
                await asyncio.sleep(answer.event_delay_s)
            if answer.end_after is not None and index >= answer.end_after:
                break  # a clean end of the body: no more events, no [DONE]
            if answer.cut_after is not None and index >= answer.cut_after:
                await writer.drain()
                await asyncio.sleep(0.05)  # as on a real network: the client reads, then the cut
                writer.close()  # ends the connection mid-stream, without the last chunk
                return False
            data = b"data: " + event + b"\n\n"
            writer.write(b"%x\r\n%s\r\n" % (len(data), data))
        writer.write(b"0\r\n\r\n")
        await writer.drain()
        return True

    def _next_step(self) -> Mapping[str, Any]:
        if self._steps:
            return self._steps.popleft()
        if self.fault_rate and self._rng.random() < self.fault_rate:
            return self._rng.choice(self.FAULTS)
        return {}

    async def _answer(
        self, method: str, path: str, raw: bytes, headers: dict[str, str]
    ) -> tuple[int, dict, Any] | _Stream:
        """The scripted answer; a request the stub cannot read gets a 400, as from a real
        server that validates its input."""
        try:
            return await self._respond(method, path, raw, headers)
        except (ValueError, TypeError, KeyError, AttributeError, IndexError) as exc:
            error = {"message": f"invalid request: {type(exc).__name__}", "type": "invalid"}
            return 400, {}, {"error": error}

    async def _respond(
        self, method: str, path: str, raw: bytes, headers: dict[str, str]
    ) -> tuple[int, dict, Any] | _Stream:
        if method == "GET" and path.rstrip("/").endswith("/models"):
            return 200, {}, {"object": "list", "data": [{"id": "stub", "object": "model"}]}
        request = json.loads(raw or b"{}")
        if self.record:
            self.requests.append(
                {"path": path, "body": request, "authorization": headers.get("authorization")}
            )
        step = self._next_step()
        if step.get("delay_s"):
            await asyncio.sleep(step["delay_s"])
        status = int(step.get("status", 200))
        if status != 200:
            body = step.get("body") or {
                "error": {"message": f"scripted HTTP {status}", "type": "stub_error"}
            }
            return status, dict(step.get("headers", {})), body
        if "raw" in step:
            return 200, {}, str(step["raw"])
        text = step.get("text", self.text)
        if path.endswith("/embeddings"):
            return 200, {}, _embeddings_body(request)
        if path.endswith("/completions") and "chat" not in path:
            return 200, {}, _completion_body(request, text)
        if request.get("stream"):
            return _Stream(
                _chat_events(request, text, step),
                first_token_delay_s=float(step.get("first_token_delay_s", 0.0)),
                event_delay_s=float(step.get("event_delay_s", 0.0)),
                cut_after=step.get("cut_after"),
                end_after=step.get("end_after"),
            )
        return 200, {}, _chat_body(request, text, step)


@dataclass
class _Stream:
    events: list[bytes]
    first_token_delay_s: float = 0.0
    event_delay_s: float = 0.0
    cut_after: int | None = None
    end_after: int | None = None


def _chat_events(request: dict[str, Any], text: str, step: Mapping[str, Any]) -> list[bytes]:
    """The SSE events of a streamed chat answer: role, one event per word (or per argument
    piece of each tool call), finish, usage, DONE; for each of the n choices."""
    body = _chat_body(request, text, step)
    base = {k: body[k] for k in ("id", "created", "model")} | {"object": "chat.completion.chunk"}
    base |= dict(step.get("extra") or {})

    def event(index: int, delta: dict[str, Any], finish: str | None = None) -> bytes:
        choice = {"index": index, "delta": delta, "finish_reason": finish}
        if delta.get("content"):
            choice |= dict(step.get("choice_extra") or {})
        return json.dumps(base | {"choices": [choice]}).encode()

    events = []
    for choice in body["choices"]:
        index, message = choice["index"], choice["message"]
        opening = {"role": "assistant", "content": ""} | dict(step.get("message_extra") or {})
        events.append(event(index, opening))
        words = text.split(" ") if message["content"] else []
        events += [event(index, {"content": w if i == 0 else " " + w}) for i, w in enumerate(words)]
        for position, call in enumerate(message.get("tool_calls") or ()):
            head = {
                "index": position,
                "id": call["id"],
                "type": "function",
                "function": {"name": call["function"]["name"], "arguments": ""},
            }
            events.append(event(index, {"tool_calls": [head]}))
            arguments = call["function"]["arguments"]
            for start in range(0, len(arguments), 7):
                piece = {"index": position, "function": {"arguments": arguments[start : start + 7]}}
                events.append(event(index, {"tool_calls": [piece]}))
        events.append(event(index, {}, choice["finish_reason"]))
    if (request.get("stream_options") or {}).get("include_usage"):
        events.append(json.dumps(base | {"choices": [], "usage": body["usage"]}).encode())
    events.append(b"[DONE]")
    return events


def _chat_body(request: dict[str, Any], text: str, step: Mapping[str, Any]) -> dict[str, Any]:
    prompt_tokens = sum(len(str(m.get("content", "")).split()) for m in request.get("messages", []))
    message: dict[str, Any] = {"role": "assistant", "content": text}
    finish = "stop"
    if step.get("tool_calls"):
        message["content"] = None
        message["tool_calls"] = [
            {
                "id": f"call_{i}",
                "type": "function",
                "function": {"name": call["name"], "arguments": call["arguments"]},
            }
            for i, call in enumerate(step["tool_calls"])
        ]
        finish = "tool_calls"
    message |= dict(step.get("message_extra") or {})
    completion_tokens = 8 if step.get("tool_calls") else len(text.split())
    choice_extra = dict(step.get("choice_extra") or {})
    choices = [
        {"index": i, "message": dict(message), "finish_reason": finish, "logprobs": None}
        | choice_extra
        for i in range(int(request.get("n") or 1))
    ]
    return {
        "id": "chatcmpl-stub",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": request.get("model", "stub"),
        "choices": choices,
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        },
        **dict(step.get("extra") or {}),
    }


def _embeddings_body(request: dict[str, Any]) -> dict[str, Any]:
    """One 8-dimensional vector per input, derived from its text's hash; base64 of
    little-endian float32 when the request says `encoding_format: base64` (as the openai SDK
    asks by default)."""
    inputs = request.get("input")
    texts = [inputs] if isinstance(inputs, str) else list(inputs or [])
    data = []
    for index, text in enumerate(texts):
        digest = hashlib.sha256(str(text).encode()).digest()
        vector = [round(b / 255 - 0.5, 6) for b in digest[:8]]
        if request.get("encoding_format") == "base64":
            packed = struct.pack(f"<{len(vector)}f", *vector)
            data.append(
                {
                    "object": "embedding",
                    "index": index,
                    "embedding": base64.b64encode(packed).decode(),
                }
            )
        else:
            data.append({"object": "embedding", "index": index, "embedding": vector})
    tokens = sum(len(str(t).split()) for t in texts)
    return {
        "object": "list",
        "data": data,
        "model": request.get("model", "stub"),
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }


def _completion_body(request: dict[str, Any], text: str) -> dict[str, Any]:
    """vLLM-shaped echo logprobs: one token per word, token i has logprob -i/10."""
    prompt = request.get("prompt", "")
    tokens, offsets, position = [], [], 0
    for word in prompt.split(" "):
        piece = word if position == 0 else " " + word
        tokens.append(piece)
        offsets.append(position)
        position += len(piece)
    tokens.append(" END")
    offsets.append(position)
    values = [None] + [-i / 10 for i in range(1, len(tokens))]
    tops = [None] + [{t: v} for t, v in zip(tokens[1:], values[1:], strict=True)]
    return {
        "id": "cmpl-stub",
        "object": "text_completion",
        "created": int(time.time()),
        "model": request.get("model", "stub"),
        "choices": [
            {
                "index": 0,
                "text": prompt + " END",
                "finish_reason": "length",
                "logprobs": {
                    "tokens": tokens,
                    "text_offset": offsets,
                    "token_logprobs": values,
                    "top_logprobs": tops,
                },
            }
        ],
        "usage": {
            "prompt_tokens": len(tokens) - 1,
            "completion_tokens": 1,
            "total_tokens": len(tokens),
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9000)
    parser.add_argument("--fault-rate", type=float, default=0.0, help="Share of random faults.")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    stub = StubServer(args.host, args.port, fault_rate=args.fault_rate, seed=args.seed)
    stub.record = False  # a long-running benchmark stub must not grow without bound
    asyncio.run(stub.serve_forever())


if __name__ == "__main__":
    main()
