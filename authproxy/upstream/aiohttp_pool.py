"""aiohttp's connections with the native client's rules (limits.py): bounded heads, no reuse after an answer whose
end is uncertain, no byte accepted from an idle connection, and a rest before reuse.

aiohttp has no hooks for these, so they sit in subclasses of two of its private parts (as aiohttp's own test
client and `ws_connect` reach into them): the connection protocol (`ResponseHandler`: what is parsed, and when a
connection is idle) and the connector (`TCPConnector._release`: when a released connection goes back to its pool).
The shared transport suite (tests/upstream/) holds them to the same contract as the native client.
"""

from __future__ import annotations

import asyncio
import collections
import functools
from typing import Any

import aiohttp
from aiohttp.client_proto import ResponseHandler
from aiohttp.client_reqrep import ConnectionKey
from aiohttp.streams import EMPTY_PAYLOAD

from authproxy.clock import Clock
from authproxy.upstream.egress_dial import TunnelRefused, connect_tunnel
from authproxy.upstream.limits import NO_REUSE_AFTER, HeadLimits, endpoint_busy
from authproxy.upstream.transport import Endpoint

TUNNEL = "X-Authproxy-Egress-Tunnel"  # in proxy_headers: tunnel this request (never sent: see _create_proxy_connection)


class HeadRefused(aiohttp.ClientError):
    """A head limit was crossed: `kind` is "head", "headers" or "interim" (see `aiohttp_errors.refusal`)."""

    def __init__(self, kind: str) -> None:
        super().__init__(kind)
        self.kind = kind


class LimitedHandler(ResponseHandler):
    """aiohttp's connection protocol, held to the limits of an answer's head and closed by any byte while idle."""

    def __init__(self, loop: asyncio.AbstractEventLoop, limits: HeadLimits) -> None:
        super().__init__(loop)
        self.limits = limits
        self.idle = False  # the answer is complete: a byte now is a stray answer (it would be the next one's)
        self._interims = 0
        self._heading = False  # the final head is not in yet: its bytes are counted
        self._head_left = 0

    def set_response_params(self, **kwargs: Any) -> None:
        """An exchange starts on this connection."""
        self.idle, self._interims, self._heading, self._head_left = False, 0, True, self.limits.max_head
        super().set_response_params(**kwargs)

    def data_received(self, data: bytes) -> None:
        if self.idle:
            if data:
                self._close_idle()
            return
        if self._heading and data:  # the parser would buffer a head without end: its bytes are counted
            left = self._head_left - len(data)
            if left <= 0:
                self._past_head_limit(data)
                return
            self._head_left = left
        super().data_received(data)

    def _past_head_limit(self, data: bytes) -> None:
        """This read reaches the heads' limit: parse up to it, and no further if the final head is not in by then."""
        cut = self._head_left
        self._head_left = 0
        super().data_received(data[:cut])
        if self.exception() is not None:  # refused (by the parser, or here) on the way
            return
        if self._heading:
            self._refuse("head")
        elif len(data) > cut:
            self.data_received(data[cut:])

    def feed_data(self, data: tuple[Any, Any], size: int = 0) -> None:
        """One answer parsed (message, payload): count interim ones; decide whether the connection may be reused."""
        if self.idle or self.exception() is not None:
            self._close_idle()
            return
        message, payload = data
        code = message.code
        if 100 <= code < 200 and code != 101:
            self._interims += 1
            if self._interims > self.limits.max_interim:
                self._refuse("interim")
                return
        elif not self._heading:  # a second answer to one request
            self._close_idle()
            return
        else:
            self._heading = False
            if len(message.raw_headers) > self.limits.max_headers:
                self._refuse("headers")
                return
            if self._skip_payload or code in NO_REUSE_AFTER or self._interims or _until_close(message):
                self._should_close = True  # its end is uncertain (limits.py): never used again
            elif payload is not EMPTY_PAYLOAD:
                payload.on_eof(self._went_idle)  # before aiohttp's own, which releases the connection
        super().feed_data(data, size)

    def _went_idle(self) -> None:
        self.idle = True

    def _refuse(self, kind: str) -> None:
        self._heading = False
        self.set_exception(HeadRefused(kind))
        if self.transport is not None:
            self.transport.abort()

    def _close_idle(self) -> None:
        self._should_close = True
        if self.transport is not None:
            self.transport.abort()


def _until_close(message: Any) -> bool:
    """The body ends with the connection: no length, or codings that do not end in `chunked`."""
    if "Transfer-Encoding" in message.headers:
        return not message.chunked
    return "Content-Length" not in message.headers


class RestingConnector(aiohttp.TCPConnector):
    """aiohttp's connector whose released connections rest `rest` seconds (on `clock`) before they go back to the
    pool; they stay counted as in use meanwhile, and go back at once when a request waits or the limit is reached."""

    def __init__(self, *, limits: HeadLimits, rest: float, clock: Clock, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._factory = functools.partial(LimitedHandler, loop=self._loop, limits=limits)
        self._rest, self._clock = rest, clock
        self._resting: collections.deque[tuple[ConnectionKey, ResponseHandler, float]] = collections.deque()
        self._sweeper: asyncio.Task[None] | None = None

    @property
    def resting(self) -> int:
        return len(self._resting)

    def _release(self, key: ConnectionKey, protocol: ResponseHandler, *, should_close: bool = False) -> None:
        if self._rest <= 0 or should_close or protocol.should_close or self._closed or self._waiters:
            super()._release(key, protocol, should_close=should_close)
            return
        self._resting.append((key, protocol, self._clock.monotonic()))
        if self._sweeper is None:
            self._sweeper = self._loop.create_task(self._sweep(), name="upstream-rest")

    def make_room(self) -> None:
        """Before a request: at the limit, the connection that rested longest goes back to the pool at once."""
        if self._resting and self._limit and len(self._acquired) >= self._limit:
            key, protocol, _ = self._resting.popleft()
            super()._release(key, protocol)

    async def _sweep(self) -> None:
        """Back to the pool, each once its rest is over."""
        try:
            while self._resting:
                due = self._resting[0][2] + self._rest - self._clock.monotonic()
                if due > 0:
                    await self._clock.sleep(due)
                    continue
                key, protocol, _ = self._resting.popleft()
                super()._release(key, protocol)
        finally:
            self._sweeper = None

    async def _create_proxy_connection(self, req: Any, traces: Any, timeout: Any) -> tuple[Any, ResponseHandler]:
        """A websocket handshake to a plain-http origin through the egress proxy (marked TUNNEL by the transport)
        takes a CONNECT tunnel of its own, as the native client does (a forward proxy need not pass `Upgrade` on in
        absolute form), and is never pooled; anything else goes as aiohttp does it."""
        marked = req.proxy_headers is not None and TUNNEL in req.proxy_headers
        if req.is_ssl() or not marked:
            return await super()._create_proxy_connection(req, traces, timeout)
        host = req.url.raw_host
        authority = f"{f'[{host}]' if ':' in host else host}:{req.url.port}"
        try:
            raw = await connect_tunnel(
                req.proxy.raw_host, req.proxy.port, authority, req.proxy_headers.get("Proxy-Authorization")
            )
        except OSError as exc:  # aiohttp's own errors: aiohttp_errors.egress_failure names the proxy
            raise aiohttp.ClientProxyConnectionError(req.connection_key, exc) from None
        except TunnelRefused as exc:
            raise aiohttp.ClientHttpProxyError(req.request_info, (), status=exc.status, message="CONNECT") from None
        protocol = self._factory()
        raw.set_protocol(protocol)
        protocol.connection_made(raw)
        protocol.force_close()  # one handshake, then the tunnel (or closed): never back in the pool
        return raw, protocol

    def _close(self, *args: Any, **kwargs: Any) -> Any:
        sweeper, self._sweeper = self._sweeper, None
        if sweeper is not None:
            sweeper.cancel()
        self._resting.clear()  # still counted as in use: closed with those
        return super()._close(*args, **kwargs)


class EndpointGate:
    """An endpoint's own limit: at most `limit` exchanges with it at a time, so at most that many connections busy for
    it (aiohttp pools idle ones per host and port for all endpoints: those count against the transport's limit)."""

    __slots__ = ("free", "waiting")

    def __init__(self, limit: int) -> None:
        self.free = asyncio.Semaphore(limit)
        self.waiting = 0

    async def enter(self, endpoint: Endpoint, connect_timeout: float) -> None:
        if not self.free.locked():
            await self.free.acquire()  # at once
            return
        self.waiting += 1
        try:
            async with asyncio.timeout(connect_timeout):
                await self.free.acquire()
        except TimeoutError:
            raise endpoint_busy(endpoint, connect_timeout) from None
        finally:
            self.waiting -= 1
