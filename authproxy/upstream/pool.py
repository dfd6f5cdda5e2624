"""The native transport: keep-alive connections per endpoint within the limits, idle ones reaped on time.

Why not aiohttp's ClientSession for every request: measured here (bench/, same machine, same run),
its per-request machinery (ClientRequest, connector, timers, ClientResponse, StreamReader) cost about
80 us of the ~145 us a minimal aiohttp proxy spends per small request; this client does the same
exchange in a fraction of that. The response is parsed by llhttp (Node.js's parser, through
httptools); bytes pass through untouched (no decompression, no added headers).

A request that fails on a reused connection before any response byte arrives (the upstream closed
it while idle) is sent again on a new connection when it is idempotent and its body can be sent
again; a POST never is.

Limits: `limit` connections in all, and an endpoint's own `Endpoint.limit` if it has one (connections
open or being opened to it). A request that finds no room waits, at most connect_timeout, for room
for its own endpoint: waiters are kept per endpoint and woken in turn, so a full endpoint holds up
only its own requests. A released connection rests `rest` seconds (if set) before it is handed out
again, unless there is no room for another one (limits.py).
"""

from __future__ import annotations

import asyncio
import collections
import functools
import operator
import os
import ssl

from multidict import CIMultiDict

from authproxy.clock import Clock, SystemClock
from authproxy.upstream.connection import Connection, StaleConnectionError
from authproxy.upstream.egress_dial import absolute_form, open_connection, proxy_refusal, proxy_request
from authproxy.upstream.limits import MAX_HEAD, MAX_HEADERS, MAX_INTERIM, REST, HeadLimits, endpoint_busy
from authproxy.upstream.response import NativeResponse
from authproxy.upstream.transport import (
    IDEMPOTENT_METHODS,
    Body,
    Endpoint,
    UpstreamBrokenError,
    UpstreamConnectError,
    UpstreamTimeoutError,
)

IDLE_SINCE = operator.attrgetter("idle_since")


class IdleConnections:
    """An endpoint's idle connections, each list oldest first: `resting` ones (released less than `rest` ago) and
    `rested` ones, so the most recently used one that has rested is `rested[-1]`, found without a search."""

    __slots__ = ("rested", "resting")

    def __init__(self) -> None:
        self.resting: collections.deque[Connection] = collections.deque()
        self.rested: list[Connection] = []

    def __len__(self) -> int:
        return len(self.resting) + len(self.rested)

    def oldest(self) -> Connection | None:
        return self.rested[0] if self.rested else self.resting[0] if self.resting else None

    def pop_oldest(self) -> Connection:
        return self.rested.pop(0) if self.rested else self.resting.popleft()

    def discard(self, conn: Connection) -> None:
        if conn in self.rested:
            self.rested.remove(conn)
        elif conn in self.resting:
            self.resting.remove(conn)


class NativeTransport:
    """Keep-alive connections per endpoint, `limit` in all (and an endpoint's own `limit`, if it has one); idle ones
    are closed `idle_timeout` after their last use, by a reaper on the injected clock (not only when the pool next
    reaches for them). A released connection rests `rest` seconds (0: none) before it is handed out again
    (limits.py).

    `max_head`, `max_headers`, `max_interim`: the bounds on an answer's head (limits.HeadLimits).
    """

    def __init__(
        self,
        limit: int = 512,
        idle_timeout: float = 60.0,
        *,
        rest: float = REST,
        max_head: int = MAX_HEAD,
        max_headers: int = MAX_HEADERS,
        max_interim: int = MAX_INTERIM,
        clock: Clock | None = None,
    ) -> None:
        self.limit, self.idle_timeout, self.rest = limit, idle_timeout, rest
        self.head_limits = HeadLimits(max_head, max_headers, max_interim)
        self._clock = clock or SystemClock()
        self._idle: dict[Endpoint, IdleConnections] = {}
        self._open: set[Connection] = set()
        self._held: dict[Endpoint, int] = {}  # endpoints with a limit: their connections, open or being opened
        self._connecting = 0  # connections being made: they count against the limit too
        # Requests waiting for room, per endpoint (oldest first); the endpoints in turn order.
        self._waiters: dict[Endpoint, collections.deque[asyncio.Future[None]]] = {}
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
        proxied = absolute_form(endpoint, upgrade)
        if proxied:  # plain http through the egress proxy: the request goes to the proxy itself
            target, headers = proxy_request(endpoint, target, headers)
        while True:
            # A websocket through a proxy's CONNECT to a plain-http origin needs a tunnel of its own (used once).
            tunnel = upgrade and endpoint.egress is not None and endpoint.tls is None
            conn = await self._acquire(endpoint, connect_timeout, tunnel)
            try:
                response = await conn.exchange(method, target, headers, body, read_timeout, upgrade)
            except StaleConnectionError:
                if not replayable:
                    raise UpstreamBrokenError("the upstream closed the kept-alive connection") from None
                continue
            if proxied:
                proxy_refusal(endpoint, response)
            return response

    def connections(self) -> dict[str, int]:
        idle = sum(len(conns) for conns in self._idle.values())
        waiting = sum(1 for queue in self._waiters.values() for waiter in queue if not waiter.done())
        return {"open": len(self._open), "idle": idle, "waiting": waiting}

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
        if self._closed or conn.single_use:
            conn.finished(reusable=False)
            return
        conn.idle_since = self._clock.monotonic()
        idle = self._idle.get(conn.endpoint)
        if idle is None:
            idle = self._idle[conn.endpoint] = IdleConnections()
        idle.resting.append(conn)
        if self._reaper is None:
            self._reaper = asyncio.get_running_loop().create_task(self._reap(), name="upstream-idle-reaper")
        elif self._reaper_waits:  # it has nothing to reap and waits for this
            self._reaper_waits = False
            self._idle_again.set()
        if self._waiters:
            self._wake()  # a waiter for this endpoint takes it; one for another closes it to make room

    def forget(self, conn: Connection) -> None:
        """A connection closed: it no longer counts against the limits."""
        if conn in self._open:
            self._open.discard(conn)
            if conn.endpoint.limit is not None:
                self._held[conn.endpoint] -= 1
            self._wake()
        idle = self._idle.get(conn.endpoint)
        if idle:
            idle.discard(conn)

    # -- internals -----------------------------------------------------------------------------------

    async def _acquire(self, endpoint: Endpoint, connect_timeout: float, single_use: bool = False) -> Connection:
        """An idle connection to `endpoint` that has rested, else a new one within the limits, else the idle one that
        rested longest; else wait (at most connect_timeout in all) for room. `single_use`: always a new one (a
        tunnel for one websocket through the egress proxy); an idle one of the endpoint's gives way if need be."""
        deadline = 0.0
        while True:
            idle = None if single_use else self._idle.get(endpoint)
            if idle is not None:
                now = self._clock.monotonic()
                resting, rested = idle.resting, idle.rested
                while resting and now - resting[0].idle_since >= self.rest:
                    rested.append(resting.popleft())
                while rested:
                    conn = rested.pop()  # the most recently used: the likeliest to be still open
                    if conn.transport is not None and now - conn.idle_since < self.idle_timeout:
                        return conn
                    conn.finished(reusable=False)
            full = self._full(endpoint)
            if full is None:
                return await self._connect(endpoint, connect_timeout, single_use)
            if single_use and (own := self._idle.get(endpoint)):
                own.pop_oldest().finished(reusable=False)
                continue
            if idle:  # no room for another: the rest gives way (it never makes a request wait)
                conn = idle.pop_oldest()
                if conn.transport is not None:
                    return conn
                conn.finished(reusable=False)
                continue
            if full is not endpoint and (spare := self._spare()) is not None:
                spare.finished(reusable=False)  # make room: an idle connection elsewhere is the cheapest to give up
                continue
            loop = asyncio.get_running_loop()
            deadline = deadline or loop.time() + connect_timeout
            await self._wait(endpoint, deadline, full, connect_timeout)

    def _full(self, endpoint: Endpoint) -> object | None:
        """None when a connection to `endpoint` may be opened; else what is full: the endpoint, or this pool."""
        if endpoint.limit is not None and self._held.get(endpoint, 0) >= endpoint.limit:
            return endpoint
        if len(self._open) + self._connecting >= self.limit:
            return self
        return None

    def _spare(self) -> Connection | None:
        """The idle connection (to any endpoint) that was used longest ago."""
        oldest = [conn for idle in self._idle.values() if (conn := idle.oldest()) is not None]
        return min(oldest, key=IDLE_SINCE) if oldest else None

    async def _wait(self, endpoint: Endpoint, deadline: float, full: object, connect_timeout: float) -> None:
        """Until a connection to `endpoint` may be had (woken by `_wake`); UpstreamTimeoutError past `deadline`."""
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.setdefault(endpoint, collections.deque()).append(waiter)
        try:
            async with asyncio.timeout_at(deadline):
                await waiter
        except BaseException as exc:
            if waiter.done() and not waiter.cancelled():
                self._wake()  # woken, but gone (timed out, or its client left): pass the turn on
            else:
                self._drop_waiter(endpoint, waiter)
            if isinstance(exc, TimeoutError):
                if full is endpoint:
                    raise endpoint_busy(endpoint, connect_timeout) from None
                busy = f"all {self.limit} upstream connections stayed busy for {connect_timeout:g} s"
                raise UpstreamTimeoutError(busy) from None
            raise

    def _drop_waiter(self, endpoint: Endpoint, waiter: asyncio.Future[None]) -> None:
        queue = self._waiters.get(endpoint)
        if queue is not None and waiter in queue:
            queue.remove(waiter)
            if not queue:
                del self._waiters[endpoint]

    def _wake(self) -> None:
        """Wake the oldest waiter of the first endpoint (in turn) that can be served now: one with an idle
        connection, or with room for a new one (an idle connection elsewhere can be closed to make room)."""
        if not self._waiters:
            return
        room = len(self._open) + self._connecting < self.limit or any(self._idle.values())
        for endpoint, queue in list(self._waiters.items()):
            while queue and queue[0].done():
                queue.popleft()
            if not queue:
                del self._waiters[endpoint]
                continue
            limited = endpoint.limit is not None and self._held.get(endpoint, 0) >= endpoint.limit
            if self._idle.get(endpoint) or (room and not limited):
                queue.popleft().set_result(None)
                del self._waiters[endpoint]  # its turn is over: the other endpoints' waiters come first next time
                if queue:
                    self._waiters[endpoint] = queue
                return

    async def _connect(self, endpoint: Endpoint, connect_timeout: float, single_use: bool = False) -> Connection:
        if self._closed:
            raise UpstreamConnectError("the proxy is shutting down")
        limited = endpoint.limit is not None
        self._connecting += 1
        if limited:
            self._held[endpoint] = self._held.get(endpoint, 0) + 1
        conn: Connection | None = None
        try:
            async with asyncio.timeout(connect_timeout):
                factory = functools.partial(Connection, self, endpoint, self.head_limits)
                conn = await open_connection(factory, endpoint, upgrade=single_use)
                conn.single_use = single_use
        except TimeoutError:
            raise UpstreamTimeoutError(f"connecting took longer than {connect_timeout:g} s") from None
        except ssl.SSLError as exc:
            raise UpstreamConnectError(f"TLS handshake failed ({exc.reason or type(exc).__name__})") from None
        except OSError as exc:  # asyncio's message names the address; the errno says why
            reason = os.strerror(exc.errno) if exc.errno and exc.errno > 0 else exc.strerror  # < 0: a DNS error
            raise UpstreamConnectError(reason or type(exc).__name__) from None
        finally:
            self._connecting -= 1
            if conn is None:  # not made: its room is free again
                if limited:
                    self._held[endpoint] -= 1
                self._wake()
        if conn.transport is None:  # the upstream closed it before this request could use it
            if limited:
                self._held[endpoint] -= 1
            self._wake()
            raise UpstreamBrokenError("the upstream closed the connection as soon as it was made")
        self._open.add(conn)
        return conn

    async def _reap(self) -> None:
        """Close idle connections `idle_timeout` after their last use; sleep until the next one is due."""
        while True:
            oldest = [conn.idle_since for idle in self._idle.values() if (conn := idle.oldest()) is not None]
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
            for idle in self._idle.values():
                while (conn := idle.oldest()) is not None and conn.idle_since + self.idle_timeout <= now:  # as `due`
                    idle.pop_oldest().finished(reusable=False)
