"""The one interface for every outbound HTTP exchange: proxied requests, websocket handshakes, token requests.

A `Transport` sends a request head and a body (None, bytes, or an async iterable of bytes) to an
`Endpoint` and returns an `UpstreamResponse` as soon as the response head is in; the body streams
through `chunks()`. A 101 answer to an `upgrade=True` request hands the raw connection over as a
`Tunnel`. Redirects are never followed and nothing is added to the head but `Host` and the body's
framing (`Content-Length` or `Transfer-Encoding: chunked`).

Every failure is one of the `TransportError` family below, whichever implementation ran: the
native HTTP/1.1 client (`upstream.pool.NativeTransport`, the default) or the one on aiohttp's client
(`upstream.aiohttp_transport`). Messages name what went wrong and where, never a header value.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator
from typing import Protocol

from multidict import CIMultiDict
from yarl import URL

from authproxy.upstream.egress import Egress
from authproxy.upstream.tls import TlsSettings

Body = bytes | AsyncIterable[bytes] | None
DEFAULT_PORTS = {"http": 80, "https": 443}
IDEMPOTENT_METHODS = frozenset(("GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"))  # RFC 9110 §9.2.2


class TransportError(Exception):
    """Base of every transport failure; `str()` is safe to show (no header values, no credentials)."""


class UpstreamConnectError(TransportError):
    """The connection (TCP, DNS, TLS handshake) could not be made; `reason` says why, for clients."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class EgressProxyError(UpstreamConnectError):
    """The egress proxy could not be reached, or refused to carry the request (CONNECT refused, 407).

    `code` is the client-facing error code (`egress_proxy_unreachable`, `egress_proxy_refused`); the message names
    the proxy (credentials masked) and what to check.
    """

    def __init__(self, code: str, reason: str) -> None:
        super().__init__(reason)
        self.code = code


class UpstreamTimeoutError(TransportError):
    """Connecting took longer than connect_timeout, no connection came free in time, or the upstream
    was silent for read_timeout."""


class UpstreamBrokenError(TransportError):
    """The upstream closed or reset the connection, or sent something that is not HTTP/1.1."""


class UpstreamBadResponseError(TransportError):
    """The upstream's answer broke a limit before its body (head size, header count, interim answers): refused, and
    the connection closed, so a misbehaving upstream cannot make the proxy buffer without end or wait forever."""


class UnsafeHeaderError(TransportError):
    """A header value holds a line break or cannot be encoded: nothing was sent."""


class BodySourceError(Exception):
    """Raised by a request body's iterator when its source fails (a client's limit, a client gone).

    The transport stops the exchange and raises `UpstreamBrokenError` from it; whoever made the body
    knows the real reason (see `proxy.bodies.LimitedBody.error`).
    """


class Endpoint:
    """Where requests go: scheme, host, port and TLS settings. Built once per route (or token URL);
    connections are pooled per endpoint, by identity.

    `limit`: at most this many connections open (or being opened) to this endpoint, so one route's slow
    upstream cannot take every connection of the transport; None: only the transport's own limit applies.
    """

    __slots__ = ("egress", "host", "host_header", "limit", "origin", "port", "tls", "url")

    def __init__(
        self, url: URL, tls: TlsSettings | None = None, *, limit: int | None = None, egress: Egress | None = None
    ) -> None:
        if limit is not None and limit < 1:
            raise ValueError("an endpoint's connection limit must be at least 1")
        self.url = url
        self.limit = limit
        self.egress = egress  # the forward proxy requests go through; None: direct. Pools key on the endpoint.
        self.origin = str(url.origin())
        self.host = url.raw_host or ""
        self.port = url.port or DEFAULT_PORTS.get(url.scheme, 80)
        name = f"[{self.host}]" if ":" in self.host else self.host
        self.host_header = name if url.port in (None, DEFAULT_PORTS.get(url.scheme)) else f"{name}:{self.port}"
        self.tls = (tls or TlsSettings()) if url.scheme == "https" else None

    def __repr__(self) -> str:
        return f"Endpoint({self.origin} via {self.egress.shown})" if self.egress else f"Endpoint({self.origin})"


class Tunnel(Protocol):
    """The raw byte stream of a connection after `101 Switching Protocols`."""

    async def read(self) -> bytes:
        """The next bytes from the upstream; b"" once it has closed (or reset) its side."""

    async def write(self, data: bytes) -> None:
        """Send bytes upstream; waits while the upstream is not reading (flow control)."""

    def close(self) -> None:
        """Close the connection (idempotent)."""


class UpstreamResponse(Protocol):
    """Status and headers at once; the body as it arrives through `chunks()`; then `release()`."""

    status: int
    reason: str
    headers: CIMultiDict[str]

    def chunks(self) -> AsyncIterator[bytes]:
        """The body in the pieces buffered when asked for; raises a `TransportError` if it breaks."""

    def release(self) -> None:
        """Hand the connection back (kept alive only when the body was read to its end); idempotent."""

    def tunnel(self) -> Tunnel:
        """After a 101 to an `upgrade=True` request: the connection, as a byte stream (no longer pooled)."""

    @property
    def buffered(self) -> int:
        """Body bytes received and not yet taken by `chunks()` (flow control keeps this bounded)."""


class Transport(Protocol):
    """Sends requests to endpoints over pooled keep-alive connections."""

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
    ) -> UpstreamResponse:
        """Send one request; return once the final response head is in (1xx interim answers skipped).

        `target` is the request target exactly as sent (path and query, already encoded). A request
        that finds its kept-alive connection closed before any answer is sent again on a new one only
        when it is idempotent and its body is bytes or None. `upgrade`: the request asks to switch
        protocols, so a 101 is the answer's success (else a 101 is an `UpstreamBrokenError`).
        """

    def connections(self) -> dict[str, int]:
        """{"open": ..., "idle": ..., "waiting": ...}: for status, metrics and tests."""

    async def close(self) -> None:
        """Close every connection (at shutdown, after in-flight requests finished)."""
