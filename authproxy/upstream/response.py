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
    """Bytes received and not yet read, with one waiter; shared by responses and tunnels."""

    __slots__ = ("_waiter", "buffered", "chunks", "done", "error")

    def __init__(self) -> None:
        self.chunks: collections.deque[bytes] = collections.deque()
        self.buffered = 0
        self.done = False
        self.error: BaseException | None = None
        self._waiter: asyncio.Future[None] | None = None

    def put(self, data: bytes) -> None:
        self.chunks.append(data)
        self.buffered += len(data)
        self.wake()

    def take(self) -> bytes:
        chunks = self.chunks
        data = chunks.popleft() if len(chunks) == 1 else b"".join(chunks)
        chunks.clear()
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


class NativeResponse:
    """Status and headers at once; the body as it arrives, through `chunks()`; then `release()`."""

    __slots__ = ("_source", "headers", "inbox", "keep_alive", "reason", "status", "until_close", "upgraded")

    def __init__(self, source: Source) -> None:
        self._source: Source | None = source
        self.status = 0
        self.reason = ""
        self.headers: CIMultiDict[str] = CIMultiDict()
        self.keep_alive = False
        self.until_close = False
        self.upgraded = False  # a 101 to an upgrade request: the connection is a tunnel now
        self.inbox = Inbox()

    @property
    def buffered(self) -> int:
        return self.inbox.buffered

    async def chunks(self) -> AsyncIterator[bytes]:
        """The body, in the pieces that are buffered when asked for (one write each)."""
        inbox = self.inbox
        while True:
            if inbox.chunks:
                data = inbox.take()
                if self._source is not None:
                    self._source.consumed()
                yield data
            elif inbox.error is not None:
                raise inbox.error
            elif inbox.done:
                return
            else:
                await inbox.wait()

    def release(self) -> None:
        """Hand the connection back (kept alive only when this response was read to its end)."""
        source, self._source = self._source, None
        if source is not None:
            inbox = self.inbox
            source.finished(inbox.done and inbox.error is None and self.keep_alive and not inbox.chunks)

    def tunnel(self) -> NativeTunnel:
        """The connection after the 101, as a byte stream; this response no longer owns it."""
        source, self._source = self._source, None
        if not self.upgraded or source is None:
            raise RuntimeError("tunnel() needs a 101 answer to an upgrade request, not yet released")
        tunnel = NativeTunnel(source)
        source.start_tunnel(tunnel)
        return tunnel


class NativeTunnel:
    """The raw bytes of an upgraded connection, both ways, with flow control."""

    __slots__ = ("_source", "inbox")

    def __init__(self, source: Source) -> None:
        self._source = source
        self.inbox = Inbox()

    async def read(self) -> bytes:
        inbox = self.inbox
        while not inbox.chunks:
            if inbox.done or inbox.error is not None:
                return b""
            await inbox.wait()
        data = inbox.take()
        self._source.consumed()
        return data

    async def write(self, data: bytes) -> None:
        self._source.send(data)
        await self._source.drained()

    def close(self) -> None:
        self._source.finished(reusable=False)
