"""WebSocket proxying: the handshake carries the route's credentials; frames pass both ways.

Text, binary, ping/pong and close codes are relayed as they are (no automatic pings or pongs
on either side, so the two ends see each other's). A 401 on the handshake renews the token and
retries once, like ordinary requests. When either side closes, the other is closed with the
same code.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import aiohttp
import structlog
from aiohttp import WSMsgType, web
from yarl import URL

from authproxy.errors import BadRequest, UpstreamError
from authproxy.proxy.headers import upstream_request_headers

if TYPE_CHECKING:
    from authproxy.clock import Clock
    from authproxy.proxy.handler import Exchange
    from authproxy.proxy.routing import Route

MAX_MESSAGE = 16 * 1024 * 1024
# The client library writes its own handshake headers; the client's would clash with them.
HANDSHAKE_HEADERS = frozenset(
    (
        "sec-websocket-key",
        "sec-websocket-version",
        "sec-websocket-extensions",
        "sec-websocket-protocol",
        "content-length",
    )
)
ABNORMAL = 1011  # what a side is told when the other vanished without a close frame

log = structlog.get_logger("authproxy.websocket")


class WebSocketRefused(UpstreamError):
    """The upstream answered the handshake with an HTTP error (its status is passed on)."""

    code = "websocket_refused"


def is_websocket_upgrade(request: web.Request) -> bool:
    return request.headers.get("Upgrade", "").lower() == "websocket"


async def proxy_websocket(
    request: web.Request,
    route: Route,
    url: URL,
    request_id: str,
    session: aiohttp.ClientSession,
    exchange: Exchange,
    clock: Clock,
    key_in_authorization: bool = False,
) -> web.StreamResponse:
    from authproxy.proxy.handler import should_retry, upstream_failure

    client = web.WebSocketResponse(autoping=False, autoclose=False, max_msg_size=MAX_MESSAGE)
    if not client.can_prepare(request).ok:  # a broken handshake never reaches the upstream
        raise BadRequest("not a valid WebSocket handshake (Sec-WebSocket-Key / Version)", route=route.name)

    headers = upstream_request_headers(
        request.headers,
        route.drop | HANDSHAKE_HEADERS,
        forwarded_for=request.remote,
        proto=request.scheme,
        host=request.host,
        request_id=request_id,
    )
    if key_in_authorization:  # a team member's proxy key, even where the route passes the client's Authorization
        headers.popall("Authorization", None)
    headers.update(route.inject)
    protocols = [p.strip() for p in request.headers.get("Sec-WebSocket-Protocol", "").split(",") if p.strip()]
    ws_url = url.with_scheme("wss" if url.scheme == "https" else "ws")
    credential = route.credential
    token = await credential.current() if credential is not None else None
    exchange.sent_at = clock.monotonic()
    for attempt in (1, 2):
        if credential is not None and token is not None:
            headers.update(credential.headers(token))
        try:
            async with asyncio.timeout(route.config.connect_timeout + route.config.read_timeout):
                upstream = await session.ws_connect(
                    ws_url,
                    headers=headers,
                    protocols=protocols,
                    autoping=False,
                    ssl=route.ssl,
                    autoclose=False,
                    max_msg_size=MAX_MESSAGE,
                )
            break
        except aiohttp.WSServerHandshakeError as exc:
            challenge = (exc.headers or {}).get("WWW-Authenticate", "")
            if (
                attempt == 1
                and credential is not None
                and token is not None
                and should_retry(exc.status or 0, challenge, route, "GET")
            ):
                fresh = await credential.refresh(stale=token)
                if fresh.access_token != token.access_token:
                    token, exchange.retried = fresh, True
                    continue
            refused = WebSocketRefused(
                f"the upstream refused the WebSocket handshake (HTTP {exc.status})", route=route.name
            )
            if exc.status and 400 <= exc.status < 600:
                refused.status = exc.status
            raise refused from None
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise upstream_failure(exc, route) from None
    exchange.headers_at = clock.monotonic()
    client = web.WebSocketResponse(
        protocols=[upstream.protocol] if upstream.protocol else (),
        autoping=False,
        autoclose=False,
        max_msg_size=MAX_MESSAGE,
    )
    try:
        await client.prepare(request)
        exchange.prepared_at = clock.monotonic()
        exchange.status = 101
        await _relay(client, upstream)
    finally:
        await upstream.close()
    return client


async def _relay(client: web.WebSocketResponse, upstream: aiohttp.ClientWebSocketResponse) -> None:
    """Pump frames both ways until one side closes; then close the other with the same code."""
    to_upstream = asyncio.ensure_future(_pump(client, upstream))
    to_client = asyncio.ensure_future(_pump(upstream, client))
    try:
        done, pending = await asyncio.wait((to_upstream, to_client), return_when=asyncio.FIRST_COMPLETED)
    except asyncio.CancelledError:
        to_upstream.cancel()
        to_client.cancel()
        raise
    for task in pending:
        task.cancel()
    await asyncio.gather(*pending, return_exceptions=True)
    finished = done.pop()
    code, reason = finished.result() if not finished.exception() else (ABNORMAL, "")
    other = upstream if finished is to_upstream else client
    await other.close(code=code, message=reason.encode()[:123])
    origin = client if finished is to_upstream else upstream
    if not origin.closed:
        await origin.close(code=code, message=reason.encode()[:123])


async def _pump(
    source: web.WebSocketResponse | aiohttp.ClientWebSocketResponse,
    sink: web.WebSocketResponse | aiohttp.ClientWebSocketResponse,
) -> tuple[int, str]:
    """Relay frames from source to sink; return the close code and reason that ended it."""
    while True:
        msg = await source.receive()
        if msg.type is WSMsgType.TEXT:
            await sink.send_str(msg.data)
        elif msg.type is WSMsgType.BINARY:
            await sink.send_bytes(msg.data)
        elif msg.type is WSMsgType.PING:
            await sink.ping(msg.data)
        elif msg.type is WSMsgType.PONG:
            await sink.pong(msg.data)
        elif msg.type is WSMsgType.CLOSE:
            code = msg.data if isinstance(msg.data, int) and msg.data not in (1005, 1006) else 1000
            return code, msg.extra or ""
        else:  # CLOSING, CLOSED, ERROR: the source is gone without a close frame
            return ABNORMAL, ""
