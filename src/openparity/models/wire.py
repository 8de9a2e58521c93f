"""A lean async client for the OpenAI HTTP API (chat completions, completions), on aiohttp.

Why not the official SDK here: at concurrency 64 on 2 cores the SDK tops out near 1,000
requests/s (its aiohttp transport) or 500 (httpx), against about 6,700 for plain aiohttp on the
same loopback stub (benchmarks/openai_backend_overhead.py); the harness must not be the
bottleneck of a fast inference server. The wire format is small and stable; the official
`openai` client is still what tests use to talk to openparity's own servers.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit

import aiohttp

from openparity import __version__
from openparity.redact import redact_url


@dataclass
class WireStatusError(Exception):
    """The server answered with a non-2xx status."""

    status: int
    headers: dict[str, str]
    body: Any

    def detail(self) -> str:
        body = self.body
        if isinstance(body, dict):
            error = body.get("error")
            message = error.get("message") if isinstance(error, dict) else error
            message = message or body.get("message") or body.get("detail")
            if message:
                return str(message)
        return str(body)[:300]


class WireConfigError(ValueError):
    """The client cannot be set up as configured (the message says what to change)."""


class WireConnectionError(Exception):
    """The request never got an HTTP answer (refused, reset, DNS...)."""


class WireTimeoutError(Exception):
    """No (complete) answer within the timeout."""


class WireProtocolError(Exception):
    """A 2xx answer that is not the JSON object the API promises."""


class WireStreamCutError(Exception):
    """A server-sent event stream ended (or broke) before its `data: [DONE]`."""


class WireClient:
    """POSTs JSON to an OpenAI-compatible base URL; one aiohttp session per event loop."""

    def __init__(
        self, base_url: str, api_key: str | None, *, timeout_s: float, connect_timeout_s: float
    ) -> None:
        self.base_url, login = _without_credentials(base_url.rstrip("/"))
        self._headers = {
            "Content-Type": "application/json",
            "User-Agent": f"openparity/{__version__}",
        }
        if api_key and login:
            raise WireConfigError(
                f"{redact_url(base_url)} has credentials in its URL and an API key as well:"
                " the server can only get one of them (remove one)"
            )
        if api_key:
            self._headers["Authorization"] = f"Bearer {api_key}"
        elif login:  # http://user:password@host: Basic auth, as curl and browsers send it
            self._headers["Authorization"] = login.encode()
        self._timeout = aiohttp.ClientTimeout(total=timeout_s, sock_connect=connect_timeout_s)
        self._session: aiohttp.ClientSession | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def _current_session(self) -> aiohttp.ClientSession:
        loop = asyncio.get_running_loop()
        if self._session is None or self._loop is not loop or self._session.closed:
            # a session belongs to one loop; a new asyncio.run() gets a new one
            self._session = aiohttp.ClientSession(
                headers=self._headers,
                timeout=self._timeout,
                connector=aiohttp.TCPConnector(limit=0, ttl_dns_cache=300),
            )
            self._loop = loop
        return self._session

    async def post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        session = self._current_session()
        try:
            async with session.post(self.base_url + path, data=json.dumps(body)) as response:
                raw = await response.read()
                if response.status >= 300:
                    raise WireStatusError(
                        response.status, dict(response.headers), _json_or_text(raw)
                    )
        except (TimeoutError, aiohttp.ServerTimeoutError) as exc:
            raise WireTimeoutError(str(exc) or "timed out") from exc
        except aiohttp.ClientConnectorError as exc:
            raise WireConnectionError(str(exc.os_error or exc)) from exc
        except aiohttp.ClientError as exc:  # reset, disconnected, truncated body
            raise WireConnectionError(f"{type(exc).__name__}: {exc}") from exc
        try:
            data = json.loads(raw)
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise WireProtocolError(f"the answer is not JSON: {raw[:120]!r}") from None
        if not isinstance(data, dict):
            raise WireProtocolError(f"the answer is not a JSON object: {raw[:120]!r}")
        return data

    async def stream(self, path: str, body: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        """POST, then yield each server-sent `data:` JSON object until `data: [DONE]`.

        The timeout applies between reads (a stream may run long, but must not stall).
        """
        session = self._current_session()
        started = False
        timeout = aiohttp.ClientTimeout(
            total=None, sock_connect=self._timeout.sock_connect, sock_read=self._timeout.total
        )
        try:
            async with session.post(
                self.base_url + path, data=json.dumps(body), timeout=timeout
            ) as response:
                if response.status >= 300:
                    raw = await response.read()
                    raise WireStatusError(
                        response.status, dict(response.headers), _json_or_text(raw)
                    )
                started = True
                async for line in response.content:
                    if not line.startswith(b"data:"):
                        continue
                    data = line[5:].strip()
                    if data == b"[DONE]":
                        return
                    try:
                        event = json.loads(data)
                    except (UnicodeDecodeError, json.JSONDecodeError):
                        bad = f"a stream event is not JSON: {data[:120]!r}"
                        raise WireProtocolError(bad) from None
                    if isinstance(event, dict):
                        yield event
        except (TimeoutError, aiohttp.ServerTimeoutError) as exc:
            raise WireTimeoutError(str(exc) or "timed out") from exc
        except aiohttp.ClientConnectorError as exc:
            raise WireConnectionError(str(exc.os_error or exc)) from exc
        except aiohttp.ClientError as exc:
            if started:  # the answer had begun: whatever broke, the stream was cut
                raise WireStreamCutError(f"{type(exc).__name__}: {exc}") from exc
            raise WireConnectionError(f"{type(exc).__name__}: {exc}") from exc
        raise WireStreamCutError("the stream ended without data: [DONE]")

    async def close(self) -> None:
        if self._session is not None and not self._session.closed:
            with contextlib.suppress(RuntimeError):  # its loop is gone: nothing left to close
                await self._session.close()
        self._session = None


def _without_credentials(url: str) -> tuple[str, aiohttp.BasicAuth | None]:
    """The URL without `user:password@`, and those credentials as Basic auth."""
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url, None
    login = aiohttp.BasicAuth(unquote(parts.username or ""), unquote(parts.password or ""))
    host = parts.hostname or ""
    netloc = f"[{host}]" if ":" in host else host
    if parts.port is not None:
        netloc += f":{parts.port}"
    return urlunsplit(parts._replace(netloc=netloc)), login


def _json_or_text(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError):
        return raw.decode("utf-8", errors="replace")[:500]
