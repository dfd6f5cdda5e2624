"""What goes back to the client: the upstream's answer streamed through, or our own JSON error.

The upstream's body is never buffered: each piece is written as it arrives. A body the upstream
breaks after its head was sent can only be signalled by cutting the client's connection, never by
a clean but short body.
"""

from __future__ import annotations

import asyncio
import math

import structlog
from aiohttp import web

from authproxy.clock import Clock
from authproxy.errors import AuthProxyError, BadRequest, ClientTooSlow
from authproxy.proxy.exchange import Exchange
from authproxy.proxy.headers import REQUEST_ID, response_headers, rewrite_location
from authproxy.proxy.routing import Route
from authproxy.upstream.transport import TransportError, UpstreamResponse

NO_BODY_STATUS = frozenset((204, 304))
SMALL_BODY = 16 * 1024  # a known length up to this is written at once, whether or not the client reads

log = structlog.get_logger("authproxy.proxy")


async def stream_back(
    request: web.Request,
    upstream: UpstreamResponse,
    route: Route,
    request_id: str,
    exchange: Exchange,
    clock: Clock,
    send_timeout: float,
) -> web.StreamResponse:
    """Send the upstream's status, headers (hop-by-hop dropped, Location pointed at the proxy) and body.

    A client that stops accepting the body for `send_timeout` seconds has both connections closed: it
    must not hold an upstream connection (the upstream's silence timer rests while the client is the slow
    side). Small bodies of a known length are written without the timer: they never wait for the client.
    """
    response = web.StreamResponse(status=upstream.status, reason=upstream.reason)
    headers = response_headers(upstream.headers, response.headers)  # straight into the response
    location = headers.get("Location")
    if location is not None:
        headers["Location"] = rewrite_location(
            location,
            origin=route.origin,
            base_path=route.base_path,
            prefix=route.match_prefix,
            proxy_origin=f"{request.scheme}://{request.host}",
        )
    headers[REQUEST_ID] = request_id
    await response.prepare(request)
    exchange.prepared_at = clock.monotonic()
    if request.method == "HEAD" or upstream.status in NO_BODY_STATUS:
        await response.write_eof()
        return response
    written = 0
    capture = exchange.capture  # console.capture_bodies: the first bytes are kept for the detail view
    keep = exchange.capture_limit
    length = upstream.headers.get("Content-Length")
    try:
        if length is not None and length.isdigit() and int(length) <= SMALL_BODY:
            async for chunk in upstream.chunks():
                await response.write(chunk)
                written += len(chunk)
                if capture is not None and len(capture) < keep:
                    capture += chunk[: keep - len(capture)]
        else:
            loop = asyncio.get_running_loop()
            async with asyncio.timeout(None) as deadline:
                async for chunk in upstream.chunks():
                    deadline.reschedule(loop.time() + send_timeout)  # only while the client is being written to
                    await response.write(chunk)
                    deadline.reschedule(None)
                    written += len(chunk)
                    if capture is not None and len(capture) < keep:
                        capture += chunk[: keep - len(capture)]
    except TimeoutError:
        exchange.bytes = written
        exchange.error = "client_not_reading"
        log.warning(
            "client_not_reading",
            route=route.name,
            request_id=request_id,
            detail=f"the client accepted nothing for {send_timeout:g} s (limits.send_timeout): both connections closed",
        )
        if request.transport is not None:
            request.transport.abort()
        return response
    except TransportError as exc:
        exchange.bytes = written
        exchange.error = "upstream_broken_body"
        log.warning("upstream_broken_body", route=route.name, request_id=request_id, error=type(exc).__name__)
        if request.transport is not None:
            request.transport.abort()
        return response
    exchange.bytes = written
    await response.write_eof()
    return response


# Exchange.error values of a response cut off after its head: errors in the metrics whatever the status.
CUT_OFF = frozenset(("client_not_reading", "upstream_broken_body"))


def error_response(err: AuthProxyError, request_id: str) -> web.Response:
    """The JSON error body every client-facing failure uses."""
    headers = {REQUEST_ID: request_id}
    if err.retry_after is not None:
        headers["Retry-After"] = str(max(1, math.ceil(err.retry_after)))
    response = web.json_response(err.body(request_id), status=err.status, headers=headers)
    if isinstance(err, ClientTooSlow | BadRequest):
        response.force_close()  # the rest of the request is unread: the connection cannot be reused
    return response


async def hang_up_after(request: web.Request, response: web.Response) -> web.Response:
    """Send `response`, then close the connection at once.

    For a client too slow to finish its body: aiohttp would otherwise linger up to 10 s reading
    the rest of it before closing. Closing the transport still flushes what was written.
    """
    await response.prepare(request)
    await response.write_eof()
    if request.transport is not None:
        request.transport.close()
    return response
