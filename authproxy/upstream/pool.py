"""The keep-alive pool: connections per endpoint within one limit, and where they connect to.

A request that fails on a reused connection before any response byte arrives (the upstream closed
it while idle) is sent again on a new connection when it is idempotent and its body can be sent
again; a POST never is.
"""

from __future__ import annotations

import asyncio
import collections
import functools
import os
import ssl
from typing import Any

from multidict import CIMultiDict
from yarl import URL

from authproxy.upstream.connection import (
    UpstreamBrokenError,
    UpstreamConnectError,
    UpstreamResponse,
    UpstreamTimeoutError,
    _Connection,
    _Stale,
)

IDEMPOTENT_METHODS = frozenset(("GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"))  # RFC 9110 §9.2.2
DEFAULT_PORTS = {"http": 80, "https": 443}


class Endpoint:
    """Where a route's requests go, precomputed once per route (its pool key, by identity)."""

    __slots__ = ("host", "host_header", "port", "tls", "url")

    def __init__(self, url: URL, tls: ssl.SSLContext | bool) -> None:
        self.url = url
        self.host = url.raw_host or ""
        self.port = url.port or DEFAULT_PORTS.get(url.scheme, 80)
        name = f"[{self.host}]" if ":" in self.host else self.host
        self.host_header = name if url.port in (None, DEFAULT_PORTS.get(url.scheme)) else f"{name}:{self.port}"
        self.tls = tls if url.scheme == "https" else None

    def ssl_context(self) -> ssl.SSLContext | None:
        """The TLS context to connect with (None for http); the default ones are built once, on first use."""
        tls = self.tls
        if tls is None or isinstance(tls, ssl.SSLContext):
            return tls
        return _system_context() if tls else _unverified_context()


@functools.cache
def _system_context() -> ssl.SSLContext:
    return ssl.create_default_context()


@functools.cache
def _unverified_context() -> ssl.SSLContext:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


class UpstreamPool:
    """Keep-alive connections per endpoint, `limit` in all; idle ones older than `idle_timeout` are closed."""

    def __init__(self, limit: int = 512, idle_timeout: float = 60.0) -> None:
        self.limit, self.idle_timeout = limit, idle_timeout
        self._idle: dict[Endpoint, list[_Connection]] = {}
        self._open: set[_Connection] = set()
        self._connecting = 0  # connections being made: they count against the limit too
        self._waiters: collections.deque[asyncio.Future[None]] = collections.deque()
        self._closed = False

    async def request(
        self,
        endpoint: Endpoint,
        method: str,
        target: str,
        headers: CIMultiDict[str],
        body: Any,
        *,
        connect_timeout: float,
        read_timeout: float,
    ) -> UpstreamResponse:
        """Send one request; its response's head (release() it when done with the body)."""
        # Sent again after a stale close only when that cannot do anything twice: the upstream may have
        # acted on a POST before the connection dropped.
        replayable = (body is None or isinstance(body, bytes)) and method in IDEMPOTENT_METHODS
        while True:
            conn = await self._acquire(endpoint, connect_timeout)
            try:
                return await conn.exchange(method, target, headers, body, read_timeout)
            except _Stale:
                if not replayable:
                    raise UpstreamBrokenError("the upstream closed the kept-alive connection") from None

    async def _acquire(self, endpoint: Endpoint, connect_timeout: float) -> _Connection:
        """An idle connection to `endpoint`, else a new one within the limit (waiting for room if needed)."""
        while True:
            idle = self._idle.get(endpoint)
            if idle:
                now = asyncio.get_running_loop().time()
                while idle:
                    conn = idle.pop()
                    if conn.transport is not None and now - conn.idle_since < self.idle_timeout:
                        return conn
                    conn._abort()
            if len(self._open) + self._connecting < self.limit:
                return await self._connect(endpoint, connect_timeout)
            spare = next((conns for conns in self._idle.values() if conns), None)
            if spare is not None:  # make room: an idle connection elsewhere is the cheapest to give up
                spare.pop(0)._abort()
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

    async def _connect(self, endpoint: Endpoint, connect_timeout: float) -> _Connection:
        if self._closed:
            raise UpstreamConnectError("the proxy is shutting down")
        loop = asyncio.get_running_loop()
        context = endpoint.ssl_context()
        self._connecting += 1
        try:
            async with asyncio.timeout(connect_timeout):
                _, conn = await loop.create_connection(
                    lambda: _Connection(self, endpoint),
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

    def put_back(self, conn: _Connection) -> None:
        if self._closed:
            conn._abort()
            return
        self._idle.setdefault(conn.endpoint, []).append(conn)
        self._wake_one()  # a waiter for this endpoint takes it; one for another closes it to make room

    def forget(self, conn: _Connection) -> None:
        """A connection closed: it no longer counts against the limit."""
        if conn in self._open:
            self._open.discard(conn)
            self._wake_one()
        idle = self._idle.get(conn.endpoint)
        if idle and conn in idle:
            idle.remove(conn)

    async def close(self) -> None:
        """Close every connection (at shutdown, after in-flight requests finished)."""
        self._closed = True
        for conn in list(self._open):
            conn._abort()
        self._idle.clear()
