"""Reading request bodies from clients under the configured limits (size, slowness)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from aiohttp import StreamReader

from authproxy.errors import AuthProxyError, BadRequest, BodyTooLarge, ClientTooSlow


def too_large(limit: int) -> BodyTooLarge:
    return BodyTooLarge(f"the request body is larger than limits.max_body ({limit} bytes)")


def too_slow(timeout: float) -> ClientTooSlow:
    return ClientTooSlow(f"the client sent nothing for {timeout:g} s (limits.client_timeout)")


async def read_body(content: StreamReader, length: int, timeout: float) -> bytes:
    """Exactly `length` bytes (for a body that may be replayed), each wait bounded by `timeout`."""
    try:
        async with asyncio.timeout(timeout):
            return await content.readexactly(length)
    except TimeoutError:
        raise too_slow(timeout) from None
    except asyncio.IncompleteReadError:
        raise BadRequest("the request body ended before its Content-Length") from None


class LimitedBody:
    """A client's body streamed upstream chunk by chunk, cut off past `limit` bytes or `timeout` of silence.

    aiohttp sends it as the upstream request body; when it stops early, `error` says why, so
    the proxy can answer 413/408 instead of a generic upstream failure.
    """

    def __init__(self, content: StreamReader, limit: int, timeout: float) -> None:
        self.content, self.limit, self.timeout = content, limit, timeout
        self.error: AuthProxyError | None = None

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self._chunks()

    async def _chunks(self) -> AsyncIterator[bytes]:
        total = 0
        while True:
            try:
                async with asyncio.timeout(self.timeout):
                    chunk = await self.content.readany()
            except TimeoutError:
                self.error = too_slow(self.timeout)
                raise self.error from None
            if not chunk:
                return
            total += len(chunk)
            if total > self.limit:
                self.error = too_large(self.limit)
                raise self.error
            yield chunk
