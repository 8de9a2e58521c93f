"""Shutting down without cutting a stream silently. On SIGTERM (or Ctrl-C) the server stops
taking connections and lets requests in flight finish for `drain_s` seconds; a stream still
running then gets an SSE error event that says the gateway is shutting down (and its ledger
row says "cut by shutdown") before the server's own deadline closes the connection."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import threading
from collections.abc import AsyncIterator
from typing import Any, TypeVar

T = TypeVar("T")

SHUTDOWN_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class StreamCut(Exception):
    """The drain ended with the stream still running."""


class Drain:
    """The shutdown deadline of one server process."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.cut = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._begun = False

    def install(self) -> None:
        """Begin the drain on the first shutdown signal (the server's own handler, installed
        before this one, still runs: it stops taking connections)."""
        if threading.current_thread() is not threading.main_thread():
            return
        self._loop = asyncio.get_running_loop()
        for sig in SHUTDOWN_SIGNALS:
            previous = signal.getsignal(sig)

            def handler(number: int, frame: Any, previous: Any = previous) -> None:
                self.begin()
                if callable(previous):
                    previous(number, frame)

            signal.signal(sig, handler)

    def begin(self) -> None:
        if self._begun or self._loop is None:
            return
        self._begun = True
        self._loop.call_soon_threadsafe(self._loop.call_later, self.seconds, self.cut.set)

    async def until_cut(self, pieces: AsyncIterator[T]) -> AsyncIterator[T]:
        """`pieces`, raising StreamCut once the drain deadline passes while waiting for one."""
        cut = asyncio.ensure_future(self.cut.wait())
        try:
            while True:
                following = asyncio.ensure_future(anext(pieces))
                await asyncio.wait({following, cut}, return_when=asyncio.FIRST_COMPLETED)
                if not following.done():
                    following.cancel()
                    with contextlib.suppress(asyncio.CancelledError, StopAsyncIteration):
                        await following
                    raise StreamCut
                try:
                    piece = following.result()
                except StopAsyncIteration:
                    return
                yield piece
        finally:
            cut.cancel()
            aclose = getattr(pieces, "aclose", None)
            if aclose is not None:
                await aclose()
