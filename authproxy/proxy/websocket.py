"""WebSocket proxying: the handshake goes through the credential flow; after its 101, bytes pass both ways.

The client's handshake is checked first (a broken one never reaches the upstream), then sent as an
ordinary request through the route's transport, with the route's credentials and the client's own
`Sec-WebSocket-*` headers, so key, subprotocol and extensions are negotiated end to end. A 401 renews
the token and resends once, like any request. Any answer but a 101 (a refusal, a redirect) goes
back to the client as it is: no redirect is ever followed. After the 101 the proxy relays raw bytes
in both directions, with flow control, until either side closes; frames, pings and close codes
pass through untouched.
"""

from __future__ import annotations

import asyncio

from aiohttp import StreamReader, web

from authproxy.clock import Clock
from authproxy.errors import BadRequest
from authproxy.proxy.exchange import Exchange
from authproxy.proxy.flow import send_with_credential, upstream_headers
from authproxy.proxy.headers import HOP_BY_HOP, REQUEST_ID
from authproxy.proxy.responses import stream_back
from authproxy.proxy.routing import Route
from authproxy.upstream.transport import Tunnel

READ_LIMIT = 256 * 1024  # client bytes buffered before reading from the client pauses
NO_BODY = frozenset(("content-length",))  # a handshake is a GET without a body


def is_websocket_upgrade(request: web.Request) -> bool:
    return request.headers.get("Upgrade", "").lower() == "websocket"


async def proxy_websocket(
    request: web.Request,
    route: Route,
    target: str,
    exchange: Exchange,
    clock: Clock,
    send_timeout: float,
    key_in_authorization: bool = False,
) -> web.StreamResponse:
    if not web.WebSocketResponse().can_prepare(request).ok:  # a broken handshake never reaches the upstream
        raise BadRequest("not a valid WebSocket handshake (Sec-WebSocket-Key / Version)", route=route.name)
    request_id = exchange.request_id
    headers = upstream_headers(request, route, request_id, key_in_authorization, route.drop | NO_BODY)
    headers["Connection"] = "Upgrade"
    headers["Upgrade"] = "websocket"
    upstream = await send_with_credential(
        route, "GET", target, headers, None, exchange, clock, replayable=True, upgrade=True
    )
    exchange.headers_at = clock.monotonic()
    exchange.status = upstream.status
    if upstream.status != 101:
        try:
            return await stream_back(request, upstream, route, request_id, exchange, clock, send_timeout)
        finally:
            upstream.release()
    tunnel = upstream.tunnel()
    try:
        response = web.StreamResponse(status=101, reason=upstream.reason)
        for name, value in upstream.headers.items():
            if name.lower() not in HOP_BY_HOP:
                response.headers.add(name, value)
        response.headers.update({"Connection": "Upgrade", "Upgrade": "websocket", REQUEST_ID: request_id})
        await response.prepare(request)
        exchange.prepared_at = clock.monotonic()
        exchange.bytes = await _relay(request, response, tunnel, send_timeout)
    finally:
        tunnel.close()
    return response


async def _relay(request: web.Request, response: web.StreamResponse, tunnel: Tunnel, send_timeout: float) -> int:
    """Pump bytes both ways until one side closes, or the client accepts nothing for `send_timeout`
    seconds (then both close, as for any response); returns the bytes sent to the client."""
    protocol = request.protocol
    protocol.keep_alive(False)
    from_client = StreamReader(protocol, READ_LIMIT, loop=asyncio.get_running_loop())  # pauses the client when full
    protocol.set_parser(_Feed(from_client))  # what the client sends after its handshake, raw

    sent = 0

    async def upstream_to_client() -> None:
        nonlocal sent
        while data := await tunnel.read():
            async with asyncio.timeout(send_timeout):
                await response.write(data)
            sent += len(data)

    async def client_to_upstream() -> None:
        while data := await from_client.readany():
            await tunnel.write(data)

    down = asyncio.ensure_future(upstream_to_client())
    up = asyncio.ensure_future(client_to_upstream())
    try:
        await asyncio.wait((down, up), return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (down, up):
            task.cancel()
        await asyncio.gather(down, up, return_exceptions=True)
        if request.transport is not None:
            request.transport.close()  # what was written is still delivered
    return sent


class _Feed:
    """The parser aiohttp hands an upgraded connection's bytes to (as it does for its own websockets)."""

    def __init__(self, reader: StreamReader) -> None:
        self._reader = reader

    def feed_data(self, data: bytes) -> tuple[bool, bytes]:
        self._reader.feed_data(data)
        return False, b""

    def feed_eof(self) -> None:
        self._reader.feed_eof()
