"""aiohttp's failures as the `TransportError`s every transport raises: messages name the reason, never a header
value (aiohttp's own texts may quote the upstream's bytes)."""

from __future__ import annotations

import os
import ssl
from typing import Any

import aiohttp
from aiohttp.http_exceptions import BadHttpMessage, LineTooLong

from authproxy.upstream.aiohttp_pool import TUNNEL, HeadRefused
from authproxy.upstream.egress import Egress
from authproxy.upstream.limits import HeadLimits
from authproxy.upstream.transport import (
    EgressProxyError,
    Endpoint,
    TransportError,
    UpstreamBadResponseError,
    UpstreamBrokenError,
    UpstreamConnectError,
    UpstreamTimeoutError,
)


def refusal(exc: BaseException, limits: HeadLimits, endpoint: Endpoint) -> UpstreamBadResponseError | None:
    """The `UpstreamBadResponseError` for a crossed head limit (ours, or aiohttp's parser's own), else None."""
    kind = exc.kind if isinstance(exc, HeadRefused) else None
    if isinstance(exc, aiohttp.ClientResponseError):  # the parser refused: its error is the first cause
        root: BaseException = exc
        while root.__cause__ is not None:
            root = root.__cause__
        if isinstance(root, LineTooLong):  # one line longer than the head may be
            kind = "head"
        elif isinstance(root, BadHttpMessage) and "Too many headers" in str(root.message):
            kind = "headers"
    if kind == "head":
        return limits.head_too_large(endpoint)
    if kind == "headers":
        return limits.too_many_headers(endpoint)
    if kind == "interim":
        return limits.too_many_interim(endpoint)
    return None


def egress_failure(exc: BaseException, endpoint: Endpoint) -> EgressProxyError | None:
    """aiohttp's proxy failures (unreachable, CONNECT refused) as the `EgressProxyError` naming the proxy."""
    egress = endpoint.egress
    if egress is None:
        return None
    if isinstance(exc, aiohttp.ClientHttpProxyError):
        name = f"[{endpoint.host}]" if ":" in endpoint.host else endpoint.host
        return EgressProxyError("egress_proxy_refused", egress.refused(exc.status, f"{name}:{endpoint.port}"))
    if isinstance(exc, aiohttp.ClientProxyConnectionError):
        error = exc.os_error
        reason = os.strerror(error.errno) if error.errno and error.errno > 0 else error.strerror
        return EgressProxyError("egress_proxy_unreachable", egress.unreachable(reason or type(error).__name__))
    return None


def proxy_headers(egress: Egress, *, tunnel: bool = False) -> dict[str, str] | None:
    """What aiohttp sends the proxy with CONNECT; `tunnel` marks a websocket handshake that needs a tunnel even to a
    plain-http origin (aiohttp_pool.RestingConnector; the mark also keeps such connections in a pool of their own)."""
    headers = {"Proxy-Authorization": egress.authorization} if egress.authorization is not None else {}
    if tunnel:
        headers[TUNNEL] = "1"
    return headers or None


def stale(exc: BaseException) -> bool:
    """A reused connection that closed (or reset) before any byte of an answer: safe to send again."""
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return isinstance(exc.message, str)  # else aiohttp had parsed part of an answer
    if isinstance(exc, aiohttp.ClientConnectionResetError):  # found closing as the request went out
        return True
    return isinstance(exc, aiohttp.ClientOSError) and not isinstance(exc, aiohttp.ClientConnectorError)


def mapped(exc: BaseException, connect_timeout: float, read_timeout: float) -> TransportError:
    """The `TransportError` for an aiohttp failure; the message names the reason, never a header value."""
    if isinstance(exc, aiohttp.ClientConnectorCertificateError):
        return UpstreamConnectError(f"TLS handshake failed ({_ssl_reason(exc.certificate_error)})")
    if isinstance(exc, aiohttp.ClientConnectorSSLError | aiohttp.ClientSSLError):
        return UpstreamConnectError(f"TLS handshake failed ({_ssl_reason(exc.os_error)})")
    if isinstance(exc, aiohttp.ConnectionTimeoutError):  # connecting, or waiting for room within the limit
        return UpstreamTimeoutError(f"connecting took longer than {connect_timeout:g} s")
    if isinstance(exc, aiohttp.ClientConnectorError):
        error = exc.os_error
        if isinstance(error, ssl.SSLError):
            return UpstreamConnectError(f"TLS handshake failed ({_ssl_reason(error)})")
        errno = error.errno
        reason = os.strerror(errno) if errno and errno > 0 else error.strerror  # < 0: a DNS error
        return UpstreamConnectError(reason or type(error).__name__)
    if isinstance(exc, TimeoutError):  # aiohttp's SocketTimeoutError: silence past sock_read
        return UpstreamTimeoutError(f"the upstream sent nothing for {read_timeout:g} s")
    if isinstance(exc, aiohttp.ClientResponseError):  # the parser refused the answer
        return UpstreamBrokenError(f"the upstream's response is not usable HTTP/1.1 ({_root(exc)})")
    if isinstance(exc, aiohttp.ClientPayloadError):  # cut short (ContentLengthError) or badly framed
        return UpstreamBrokenError(f"the upstream's response body is incomplete ({_root(exc)})")
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return UpstreamBrokenError("the upstream closed the connection before the response was complete")
    return UpstreamBrokenError(f"the upstream broke the exchange ({type(exc).__name__})")


def _root(exc: BaseException) -> str:
    """The name of the first cause (aiohttp's parser error), not its text: that may quote the upstream's bytes."""
    while exc.__cause__ is not None:
        exc = exc.__cause__
    return type(exc).__name__


def _ssl_reason(error: Any) -> str:
    return getattr(error, "reason", None) or type(error).__name__
