"""What the native client hands its caller: a response whose body streams in, and the tunnel after a 101.

Both only buffer what the connection has received and not yet been taken; the connection pauses
reading past HIGH_WATER and resumes when the reader catches up (`Source.consumed`).
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import AsyncIterator
from typing import Protocol

from multidict import CIMultiDict

HIGH_WATER = 512 * 1024  # bytes buffered before reading from the upstream pauses


class Source(Protocol):
    """The connection behind a response or a tunnel (connection.Connection)."""

    def consumed(self) -> None:
        """The reader took the buffered bytes: read from the upstream again."""

    def finished(self, reusable: bool) -> None:
        """The exchange is over: back to the pool, or closed."""

    def start_tunnel(self, tunnel: NativeTunnel) -> None:
        """From now on, every byte received goes to `tunnel`."""

    def send(self, data: bytes) -> None:
        """Write raw bytes to the upstream."""

    async def drained(self) -> None:
        """Until the upstream takes more bytes (or the connection is gone)."""


class Inbox:
    """Bytes received and not yet read, with one waiter: what a response and a tunnel both are."""

    __slots__ = ("_waiter", "buffered", "done", "error", "queue")

    def __init__(self) -> None:
        self.queue: collections.deque[bytes] = collections.deque()
        self.buffered = 0
        self.done = False
        self.error: BaseException | None = None
        self._waiter: asyncio.Future[None] | None = None

    def put(self, data: bytes) -> None:
        self.queue.append(data)
        self.buffered += len(data)
        self.wake()

    def take(self) -> bytes:
        queue = self.queue
        data = queue.popleft() if len(queue) == 1 else b"".join(queue)
        queue.clear()
        self.buffered = 0
        return data

    async def wait(self) -> None:
        self._waiter = asyncio.get_running_loop().create_future()
        await self._waiter

    def wake(self) -> None:
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            if not waiter.done():
                waiter.set_result(None)


class NativeResponse(Inbox):
    """Status and headers at once; the body as it arrives, through `chunks()`; then `release()`."""

    __slots__ = ("_source", "headers", "keep_alive", "reason", "status", "until_close", "upgraded")

    def __init__(self, source: Source) -> None:
        self.queue: collections.deque[bytes] = collections.deque()  # Inbox's fields, set here: one call less
        self.buffered, self.done, self.error, self._waiter = 0, False, None, None
        self._source: Source | None = source
        self.status = 0
        self.reason = ""
        self.headers: CIMultiDict[str] = CIMultiDict()
        self.keep_alive = False
        self.until_close = False
        self.upgraded = False  # a 101 to an upgrade request: the connection is a tunnel now

    async def chunks(self) -> AsyncIterator[bytes]:
        """The body, in the pieces that are buffered when asked for (one write each)."""
        queue = self.queue
        while True:
            if queue:
                data = queue.popleft() if len(queue) == 1 else self.take()  # one piece: the common case
                self.buffered = 0
                if self._source is not None:
                    self._source.consumed()
                yield data
            elif self.error is not None:
                raise self.error
            elif self.done:
                return
            else:
                await self.wait()

    def release(self) -> None:
        """Hand the connection back (kept alive only when this response was read to its end)."""
        source, self._source = self._source, None
        if source is not None:
            source.finished(self.done and self.error is None and self.keep_alive and not self.queue)

    def tunnel(self) -> NativeTunnel:
        """The connection after the 101, as a byte stream; this response no longer owns it."""
        source, self._source = self._source, None
        if not self.upgraded or source is None:
            raise RuntimeError("tunnel() needs a 101 answer to an upgrade request, not yet released")
        tunnel = NativeTunnel(source)
        source.start_tunnel(tunnel)
        return tunnel


class NativeTunnel(Inbox):
    """The raw bytes of an upgraded connection, both ways, with flow control."""

    __slots__ = ("_source",)

    def __init__(self, source: Source) -> None:
        super().__init__()
        self._source = source

    async def read(self) -> bytes:
        while not self.queue:
            if self.done or self.error is not None:
                return b""
            await self.wait()
        data = self.take()
        self._source.consumed()
        return data

    async def write(self, data: bytes) -> None:
        self._source.send(data)
        await self._source.drained()

    def close(self) -> None:
        self._source.finished(reusable=False)
