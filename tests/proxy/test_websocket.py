"""WebSockets through the proxy: injected handshake credentials, frames both ways, close codes, 401 retry."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest
from aiohttp import WSMsgType, web

from tests.conftest import wait_until

HANDSHAKE = {
    "Upgrade": "websocket",
    "Connection": "Upgrade",
    "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
    "Sec-WebSocket-Version": "13",
}


def ws_cfg(upstream_url: str, token_url: str | None = None) -> dict:
    route: dict = {"upstream": upstream_url, "headers": {"x-api-key": "key-1"}}
    if token_url:
        route["auth"] = {"grant": "client_credentials", "token_url": token_url, "client_id": "c", "client_secret": "s"}
    return {"routes": {"api": route}}


async def test_echo_with_injected_headers(make_proxy, upstream, token_server, client) -> None:
    proxy = await make_proxy(ws_cfg(upstream.url, token_server.url))
    async with client.ws_connect(
        proxy.at("/api/ws?room=1"), headers={"Authorization": "Bearer mine"}, protocols=("v1",), autoping=False
    ) as ws:
        assert ws.protocol == "v1"
        await ws.send_str("hello")
        assert (await ws.receive()).data == "echo:hello"
        await ws.send_bytes(b"\x00\x01\x02")
        msg = await ws.receive()
        assert msg.type == WSMsgType.BINARY and msg.data == b"\x02\x01\x00"
        await ws.ping(b"are you there")
        msg = await ws.receive()
        assert msg.type == WSMsgType.PONG and msg.data == b"are you there"
    seen = upstream.seen[0]
    assert seen.raw_path == "/ws?room=1"
    assert seen.headers.getall("Authorization") == ["Bearer at-1"]
    assert seen.headers["x-api-key"] == "key-1"
    assert seen.headers["Sec-WebSocket-Protocol"] == "v1"


async def test_upstream_close_code_reaches_the_client(make_proxy, upstream, client) -> None:
    proxy = await make_proxy(ws_cfg(upstream.url))
    async with client.ws_connect(proxy.at("/api/ws")) as ws:
        await ws.send_str("close:4001")
        msg = await ws.receive()
        assert msg.type == WSMsgType.CLOSE
        assert msg.data == 4001 and msg.extra == "bye"


async def test_client_close_code_reaches_the_upstream(make_proxy, upstream, client) -> None:
    proxy = await make_proxy(ws_cfg(upstream.url))
    ws = await client.ws_connect(proxy.at("/api/ws"))
    await ws.send_str("x")
    await ws.receive()
    await ws.close(code=4002, message=b"done")
    await wait_until(lambda: upstream.ws_close_codes == [4002])


async def test_handshake_401_refreshes_and_retries_once(make_proxy, upstream, token_server, client) -> None:
    proxy = await make_proxy(ws_cfg(upstream.url, token_server.url))
    upstream.valid_tokens = {"at-2"}
    async with client.ws_connect(proxy.at("/api/ws")) as ws:
        await ws.send_str("after refresh")
        assert (await ws.receive()).data == "echo:after refresh"
    assert [s.headers["Authorization"] for s in upstream.seen] == ["Bearer at-1", "Bearer at-2"]
    assert len(token_server.requests) == 2


async def test_handshake_refused_twice_passes_the_status(make_proxy, upstream, token_server, client) -> None:
    proxy = await make_proxy(ws_cfg(upstream.url, token_server.url))
    upstream.valid_tokens = {"never"}
    with pytest.raises(aiohttp.WSServerHandshakeError) as info:
        await client.ws_connect(proxy.at("/api/ws"))
    assert info.value.status == 401
    assert len(upstream.seen) == 2


async def test_upstream_unreachable_for_websocket(make_proxy, client) -> None:
    proxy = await make_proxy({"routes": {"dead": {"upstream": "http://127.0.0.1:9"}}})
    async with client.get(
        proxy.at("/dead/ws"),
        headers={
            "Upgrade": "websocket",
            "Connection": "Upgrade",
            "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
            "Sec-WebSocket-Version": "13",
        },
    ) as resp:
        assert resp.status == 502
        assert (await resp.json())["error"]["code"] == "upstream_unreachable"


async def test_a_redirected_handshake_is_passed_back_and_never_followed(make_proxy, client) -> None:
    """An upstream (or its open redirect) answering the handshake with 302 to another host: the client gets
    the 302; the other host receives nothing, so the route's headers (x-api-key) never reach it."""
    reached: list[bytes] = []

    async def evil(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        reached.append(await reader.read(65536))
        writer.close()

    evil_server = await asyncio.start_server(evil, "127.0.0.1", 0)
    evil_url = f"http://127.0.0.1:{evil_server.sockets[0].getsockname()[1]}/steal"

    async def redirect(request: web.Request) -> web.Response:
        return web.Response(status=302, headers={"Location": evil_url})

    app = web.Application()
    app.router.add_get("/{tail:.*}", redirect)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        proxy = await make_proxy(ws_cfg(f"http://127.0.0.1:{runner.addresses[0][1]}"))
        async with client.get(proxy.at("/api/ws"), headers=HANDSHAKE, allow_redirects=False) as resp:
            assert resp.status == 302  # the client decides whether to follow it (with its own headers)
            assert resp.headers["Location"] == evil_url
        assert reached == []
    finally:
        await runner.cleanup()
        evil_server.close()
        await evil_server.wait_closed()


async def test_frames_sent_right_after_the_handshake_are_not_lost(make_proxy, upstream, client) -> None:
    proxy = await make_proxy(ws_cfg(upstream.url))
    async with client.ws_connect(proxy.at("/api/ws")) as ws:
        for i in range(50):
            await ws.send_str(f"m{i}")
        assert [(await ws.receive()).data for _ in range(50)] == [f"echo:m{i}" for i in range(50)]
        big = bytes(range(256)) * 4096  # 1 MiB: flow control both ways
        await ws.send_bytes(big)
        assert (await ws.receive()).data == big[::-1]
