"""A scripted, zero-latency OpenAI-compatible HTTP server on loopback.

Only for fault injection (429 with Retry-After, 5xx, 401, 404, slow answers) and for measuring
client overhead: it answers instantly with a fixed completion unless told otherwise. It is a plain
asyncio HTTP/1.1 server with keep-alive, so it costs far less per request than any client.

    with StubServer() as stub:                # in a background thread
        stub.script({"status": 429, "headers": {"Retry-After": "0.2"}})
        ... openai:stub@{stub.base_url} ...

    python -m openparity.testing.stub_server --port 9000   # in its own process
"""

from __future__ import annotations

import argparse
import asyncio
import json
import threading
import time
from collections import deque
from collections.abc import Mapping
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

    `script(*steps)` queues behaviours consumed one per request, then the default answer:
    a step is {"status": int, "headers": {...}, "body": {...}, "delay_s": float, "text": str}.
    """

    def __init__(
        self, host: str = "127.0.0.1", port: int = 0, text: str = "The answer is 4."
    ) -> None:
        self.host, self.port, self.text = host, port, text
        self.requests: list[dict[str, Any]] = []
        self._steps: deque[Mapping[str, Any]] = deque()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.base_events.Server | None = None
        self._thread: threading.Thread | None = None
        self._writers: set[asyncio.StreamWriter] = set()
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
        if self._server is not None:
            await self._server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
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
                status, extra_headers, body = await self._respond(method, path, raw)
                payload = json.dumps(body).encode()
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
            self._writers.discard(writer)
            writer.close()

    async def _respond(self, method: str, path: str, raw: bytes) -> tuple[int, dict, Any]:
        if method == "GET" and path.rstrip("/").endswith("/models"):
            return 200, {}, {"object": "list", "data": [{"id": "stub", "object": "model"}]}
        request = json.loads(raw or b"{}")
        if self.record:
            self.requests.append({"path": path, "body": request})
        step = self._steps.popleft() if self._steps else {}
        if step.get("delay_s"):
            await asyncio.sleep(step["delay_s"])
        status = int(step.get("status", 200))
        if status != 200:
            body = step.get("body") or {
                "error": {"message": f"scripted HTTP {status}", "type": "stub_error"}
            }
            return status, dict(step.get("headers", {})), body
        text = step.get("text", self.text)
        if path.endswith("/completions") and "chat" not in path:
            return 200, {}, _completion_body(request, text)
        return 200, {}, _chat_body(request, text)


def _chat_body(request: dict[str, Any], text: str) -> dict[str, Any]:
    prompt_tokens = sum(len(str(m.get("content", "")).split()) for m in request.get("messages", []))
    return {
        "id": "chatcmpl-stub",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": request.get("model", "stub"),
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": text},
                "finish_reason": "stop",
                "logprobs": None,
            }
        ],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": len(text.split()),
            "total_tokens": prompt_tokens + len(text.split()),
        },
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
    args = parser.parse_args()
    stub = StubServer(args.host, args.port)
    stub.record = False  # a long-running benchmark stub must not grow without bound
    asyncio.run(stub.serve_forever())


if __name__ == "__main__":
    main()
