"""The native transport: keep-alive connections per endpoint within one limit, idle ones reaped on time.

Why not aiohttp's ClientSession for every request: measured here (bench/, same machine, same run),
its per-request machinery (ClientRequest, connector, timers, ClientResponse, StreamReader) cost about
80 us of the ~145 us a minimal aiohttp proxy spends per small request; this client does the same
exchange in a fraction of that. The response is parsed by llhttp (Node.js's parser, through
httptools); bytes pass through untouched (no decompression, no added headers).

A request that fails on a reused connection before any response byte arrives (the upstream closed
it while idle) is sent again on a new connection when it is idempotent and its body can be sent
again; a POST never is.
"""

from __future__ import annotations

import asyncio
import collections
import os
import ssl

from multidict import CIMultiDict

from authproxy.clock import Clock, SystemClock
from authproxy.upstream.connection import Connection, StaleConnectionError
from authproxy.upstream.response import NativeResponse
from authproxy.upstream.transport import (
    IDEMPOTENT_METHODS,
    Body,
    Endpoint,
    UpstreamBrokenError,
    UpstreamConnectError,
    UpstreamTimeoutError,
)


class NativeTransport:
    """Keep-alive connections per endpoint, `limit` in all; idle ones are closed `idle_timeout` after their
    last use, by a reaper on the injected clock (not only when the pool next reaches for them)."""

    def __init__(self, limit: int = 512, idle_timeout: float = 60.0, *, clock: Clock | None = None) -> None:
        self.limit, self.idle_timeout = limit, idle_timeout
        self._clock = clock or SystemClock()
        self._idle: dict[Endpoint, list[Connection]] = {}  # oldest first
        self._open: set[Connection] = set()
        self._connecting = 0  # connections being made: they count against the limit too
        self._waiters: collections.deque[asyncio.Future[None]] = collections.deque()
        self._closed = False
        self._reaper: asyncio.Task[None] | None = None
        self._idle_again = asyncio.Event()
        self._reaper_waits = False

    async def request(
        self,
        endpoint: Endpoint,
        method: str,
        target: str,
        headers: CIMultiDict[str],
        body: Body,
        *,
        connect_timeout: float,
        read_timeout: float,
        upgrade: bool = False,
    ) -> NativeResponse:
        """Send one request; its response's head (release() it when done with the body)."""
        # Sent again after a stale close only when that cannot do anything twice: the upstream may have
        # acted on a POST before the connection dropped.
        replayable = (body is None or isinstance(body, bytes)) and method in IDEMPOTENT_METHODS
        while True:
            conn = await self._acquire(endpoint, connect_timeout)
            try:
                return await conn.exchange(method, target, headers, body, read_timeout, upgrade)
            except StaleConnectionError:
                if not replayable:
                    raise UpstreamBrokenError("the upstream closed the kept-alive connection") from None

    def connections(self) -> dict[str, int]:
        idle = sum(len(conns) for conns in self._idle.values())
        return {"open": len(self._open), "idle": idle, "waiting": len(self._waiters)}

    async def close(self) -> None:
        """Close every connection (at shutdown, after in-flight requests finished)."""
        self._closed = True
        reaper, self._reaper = self._reaper, None
        if reaper is not None:
            reaper.cancel()
            await asyncio.gather(reaper, return_exceptions=True)
        for conn in list(self._open):
            conn.finished(reusable=False)
        self._idle.clear()

    # -- the connections' owner (connection.Owner) ---------------------------------------------------

    def put_back(self, conn: Connection) -> None:
        if self._closed:
            conn.finished(reusable=False)
            return
        conn.idle_since = self._clock.monotonic()
        self._idle.setdefault(conn.endpoint, []).append(conn)
        if self._reaper is None:
            self._reaper = asyncio.get_running_loop().create_task(self._reap(), name="upstream-idle-reaper")
        elif self._reaper_waits:  # it has nothing to reap and waits for this
            self._reaper_waits = False
            self._idle_again.set()
        self._wake_one()  # a waiter for this endpoint takes it; one for another closes it to make room

    def forget(self, conn: Connection) -> None:
        """A connection closed: it no longer counts against the limit."""
        if conn in self._open:
            self._open.discard(conn)
            self._wake_one()
        idle = self._idle.get(conn.endpoint)
        if idle and conn in idle:
            idle.remove(conn)

    # -- internals -----------------------------------------------------------------------------------

    async def _acquire(self, endpoint: Endpoint, connect_timeout: float) -> Connection:
        """An idle connection to `endpoint`, else a new one within the limit (waiting for room if needed)."""
        while True:
            idle = self._idle.get(endpoint)
            if idle:
                now = self._clock.monotonic()
                while idle:
                    conn = idle.pop()  # the most recently used: the likeliest to be still open
                    if conn.transport is not None and now - conn.idle_since < self.idle_timeout:
                        return conn
                    conn.finished(reusable=False)
            if len(self._open) + self._connecting < self.limit:
                return await self._connect(endpoint, connect_timeout)
            spare = next((conns for conns in self._idle.values() if conns), None)
            if spare is not None:  # make room: an idle connection elsewhere is the cheapest to give up
                spare.pop(0).finished(reusable=False)
                continue
            waiter = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            try:
                async with asyncio.timeout(connect_timeout):
                    await waiter
            except BaseException as exc:
                if waiter.done() and not waiter.cancelled():
                    self._wake_one()  # woken, but gone (timed out, or its client left): pass the turn on
                if isinstance(exc, TimeoutError):
                    raise UpstreamTimeoutError(
                        f"all {self.limit} upstream connections stayed busy for {connect_timeout:g} s"
                    ) from None
                raise

    async def _connect(self, endpoint: Endpoint, connect_timeout: float) -> Connection:
        if self._closed:
            raise UpstreamConnectError("the proxy is shutting down")
        loop = asyncio.get_running_loop()
        context = endpoint.tls.context() if endpoint.tls is not None else None
        self._connecting += 1
        try:
            async with asyncio.timeout(connect_timeout):
                _, conn = await loop.create_connection(
                    lambda: Connection(self, endpoint),
                    endpoint.host,
                    endpoint.port,
                    ssl=context,
                    server_hostname=endpoint.host if context is not None else None,
                )
        except TimeoutError:
            raise UpstreamTimeoutError(f"connecting took longer than {connect_timeout:g} s") from None
        except ssl.SSLError as exc:
            raise UpstreamConnectError(f"TLS handshake failed ({exc.reason or type(exc).__name__})") from None
        except OSError as exc:  # asyncio's message names the address; the errno says why
            reason = os.strerror(exc.errno) if exc.errno and exc.errno > 0 else exc.strerror  # < 0: a DNS error
            raise UpstreamConnectError(reason or type(exc).__name__) from None
        finally:
            self._connecting -= 1
            self._wake_one()
        self._open.add(conn)
        return conn

    def _wake_one(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    async def _reap(self) -> None:
        """Close idle connections `idle_timeout` after their last use; sleep until the next one is due."""
        while True:
            oldest = [conns[0].idle_since for conns in self._idle.values() if conns]
            if not oldest:
                self._idle_again.clear()
                self._reaper_waits = True
                await self._idle_again.wait()
                continue
            due = min(oldest) + self.idle_timeout
            now = self._clock.monotonic()
            if now < due:
                await self._clock.sleep(due - now)
                continue
            for conns in self._idle.values():
                while conns and conns[0].idle_since + self.idle_timeout <= now:  # the same sum as `due`
                    conns.pop(0).finished(reusable=False)
