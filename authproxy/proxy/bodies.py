"""Reading request bodies from clients under the configured limits (size, slowness).

A body that may have to be sent twice (a 401 retry) is read whole first, when it is small and its
length known; any other body streams to the upstream chunk by chunk (`LimitedBody`).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from aiohttp import StreamReader, web
from aiohttp.http_exceptions import HttpProcessingError

from authproxy.config.schema import Limits
from authproxy.errors import AuthProxyError, BadRequest, BodyTooLarge, ClientTooSlow
from authproxy.upstream.transport import Body, BodySourceError


def too_large(limit: int) -> BodyTooLarge:
    return BodyTooLarge(f"the request body is larger than limits.max_body ({limit} bytes)")


def too_slow(timeout: float) -> ClientTooSlow:
    return ClientTooSlow(f"the client sent nothing for {timeout:g} s (limits.client_timeout)")


async def request_body(request: web.Request, limits: Limits, *, replay_limit: int | None) -> tuple[Body, bool]:
    """(body, replayable): a known-length body up to `replay_limit` bytes is read whole, so it can be resent.

    `replay_limit` None: the request will not be resent, so the body streams.
    """
    if not request.body_exists:
        return None, True
    length = request.content_length
    if length is not None and length > limits.max_body:
        raise too_large(limits.max_body)
    if replay_limit is not None and length is not None and length <= replay_limit:
        return await read_body(request.content, length, min(limits.client_timeout, limits.body_timeout)), True
    return LimitedBody(request.content, limits.max_body, limits.client_timeout, limits.body_timeout), False


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
    """A client's body streamed upstream chunk by chunk, cut off past `limit` bytes, `timeout` of silence,
    or `deadline` seconds in all (a client trickling one chunk just inside `timeout` would else hold its
    upstream connection for ever).

    The transport sends it as the upstream request body; when it stops early it raises
    `BodySourceError` to the transport and keeps the client-facing reason in `error` (413, 408, 400),
    so the proxy answers that instead of a generic upstream failure.
    """

    def __init__(self, content: StreamReader, limit: int, timeout: float, deadline: float = float("inf")) -> None:
        self.content, self.limit, self.timeout, self.deadline = content, limit, timeout, deadline
        self.error: AuthProxyError | None = None

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self._chunks()

    async def _chunks(self) -> AsyncIterator[bytes]:
        total = 0
        loop = asyncio.get_running_loop()
        ends = loop.time() + self.deadline
        while True:
            left = ends - loop.time()
            try:
                async with asyncio.timeout(min(self.timeout, left)):
                    chunk = await self.content.readany()
            except TimeoutError:
                if left <= self.timeout:
                    raise self._stop(
                        ClientTooSlow(f"the request body took longer than limits.body_timeout ({self.deadline:g} s)")
                    ) from None
                raise self._stop(too_slow(self.timeout)) from None
            except HttpProcessingError:  # a broken chunked encoding from the client
                raise self._stop(BadRequest("the request body's chunked encoding is broken")) from None
            if not chunk:
                return
            total += len(chunk)
            if total > self.limit:
                raise self._stop(too_large(self.limit))
            yield chunk

    def _stop(self, error: AuthProxyError) -> BodySourceError:
        self.error = error
        return BodySourceError(error.message)
