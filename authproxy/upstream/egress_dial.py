"""How the native client opens a connection: direct, to an egress proxy, or through a CONNECT tunnel in one.

As httpx's HTTPTransport (and aiohttp's connector) do: a plain-http origin behind a proxy is one connection to the
proxy, carrying requests in absolute form (`GET http://host:port/path`, with Proxy-Authorization); an https origin
is a `CONNECT host:port` to the proxy, then TLS to the origin inside that tunnel, so the proxy sees neither
requests nor tokens. A websocket handshake to a plain-http origin takes a tunnel too (a forward proxy need not
pass `Upgrade` on), and that connection is used once. Failures name the proxy: `EgressProxyError`.
"""

from __future__ import annotations

import asyncio
import os
import re
from collections.abc import Callable
from typing import Protocol, TypeVar

from multidict import CIMultiDict

from authproxy.upstream.transport import EgressProxyError, Endpoint, UpstreamResponse

MAX_CONNECT_HEAD = 16 * 1024  # a CONNECT answer's head; its body (an error page) is never read
_STATUS = re.compile(rb"^HTTP/1\.[01] (\d{3})")


class Dialled(Protocol):
    """What `open_connection` makes: an asyncio protocol that holds its transport."""

    transport: asyncio.Transport | None

    def connection_made(self, transport: asyncio.BaseTransport) -> None: ...


P = TypeVar("P", bound=Dialled)


def absolute_form(endpoint: Endpoint, upgrade: bool) -> bool:
    """The request goes to the proxy itself in absolute form (plain http, not a websocket handshake)."""
    return endpoint.egress is not None and endpoint.tls is None and not upgrade


async def open_connection(factory: Callable[[], P], endpoint: Endpoint, *, upgrade: bool = False) -> P:
    """A connected protocol to `endpoint` (through its egress, if any); OSError and ssl.SSLError as the loop's."""
    loop = asyncio.get_running_loop()
    context = endpoint.tls.context() if endpoint.tls is not None else None
    egress = endpoint.egress
    if egress is None:
        hostname = endpoint.host if context is not None else None
        _, conn = await loop.create_connection(
            factory, endpoint.host, endpoint.port, ssl=context, server_hostname=hostname
        )
        return conn
    try:
        if absolute_form(endpoint, upgrade):
            _, conn = await loop.create_connection(factory, egress.host, egress.port)
            return conn
        name = f"[{endpoint.host}]" if ":" in endpoint.host else endpoint.host
        authority = f"{name}:{endpoint.port}"
        raw = await connect_tunnel(egress.host, egress.port, authority, egress.authorization)
    except OSError as exc:
        raise EgressProxyError("egress_proxy_unreachable", egress.unreachable(_reason(exc))) from None
    except TunnelRefused as exc:
        raise EgressProxyError("egress_proxy_refused", egress.refused(exc.status, authority)) from None
    conn = factory()
    if context is None:
        raw.set_protocol(conn)  # type: ignore[arg-type]
        conn.connection_made(raw)
        return conn
    try:
        secure = await loop.start_tls(raw, conn, context, server_hostname=endpoint.host)  # type: ignore[arg-type]
    except BaseException:
        raw.abort()
        raise
    if secure is None:  # the proxy closed the tunnel during the handshake
        raise OSError(0, "the tunnel closed during the TLS handshake")
    conn.connection_made(secure)
    return conn


def proxy_request(endpoint: Endpoint, target: str, headers: CIMultiDict[str]) -> tuple[str, CIMultiDict[str]]:
    """A plain-http request as the egress proxy takes it: absolute form, with its Proxy-Authorization."""
    egress = endpoint.egress
    assert egress is not None
    if egress.authorization is not None:
        headers = headers.copy()
        headers["Proxy-Authorization"] = egress.authorization
    return endpoint.origin + target, headers


def proxy_refusal(endpoint: Endpoint, response: UpstreamResponse) -> None:
    """A 407 to an absolute-form request is the proxy's, about our credentials: `EgressProxyError`, not an answer."""
    egress = endpoint.egress
    if egress is not None and response.status == 407:
        response.release()
        raise EgressProxyError("egress_proxy_refused", egress.refused(407, f"{endpoint.host}:{endpoint.port}"))


class TunnelRefused(Exception):
    """The egress proxy answered CONNECT with something other than 200."""

    def __init__(self, status: int) -> None:
        super().__init__(f"CONNECT answered {status}")
        self.status = status


async def connect_tunnel(host: str, port: int, authority: str, authorization: str | None) -> asyncio.Transport:
    """A connection to the proxy at host:port that it has turned into a tunnel to `authority` (host:port): its
    transport, ready for a protocol (and TLS). OSError when the proxy cannot be reached or breaks the handshake,
    TunnelRefused for any answer but 200."""
    loop = asyncio.get_running_loop()
    raw, handshake = await loop.create_connection(lambda: _ConnectAnswer(loop), host, port)
    try:
        status = await handshake.send(raw, _connect_request(authority, authorization))
    except BaseException:
        raw.abort()
        raise
    if status != 200:
        raw.abort()
        raise TunnelRefused(status)
    return raw


def _connect_request(authority: str, authorization: str | None) -> bytes:
    lines = [f"CONNECT {authority} HTTP/1.1", f"Host: {authority}"]
    if authorization is not None:
        lines.append(f"Proxy-Authorization: {authorization}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def _reason(exc: OSError) -> str:
    return (os.strerror(exc.errno) if exc.errno and exc.errno > 0 else exc.strerror) or type(exc).__name__


class _ConnectAnswer(asyncio.Protocol):
    """Reads the proxy's answer to CONNECT up to the end of its head; the bytes after it belong to the tunnel."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._buffer = bytearray()
        self._answer: asyncio.Future[int] = loop.create_future()

    async def send(self, transport: asyncio.Transport, request: bytes) -> int:
        transport.write(request)
        return await self._answer

    def data_received(self, data: bytes) -> None:
        if self._answer.done():
            return
        self._buffer += data
        end = self._buffer.find(b"\r\n\r\n")
        if end < 0:
            if len(self._buffer) > MAX_CONNECT_HEAD:
                self._answer.set_exception(OSError(0, "the egress proxy's answer to CONNECT has no end"))
            return
        found = _STATUS.match(self._buffer)
        if found is None:
            self._answer.set_exception(OSError(0, "the egress proxy's answer to CONNECT is not HTTP"))
        else:
            self._answer.set_result(int(found.group(1)))

    def connection_lost(self, exc: Exception | None) -> None:
        if not self._answer.done():
            self._answer.set_exception(OSError(0, "the egress proxy closed the connection before answering CONNECT"))
