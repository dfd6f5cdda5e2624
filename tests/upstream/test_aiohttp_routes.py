"""Routes with `transport: aiohttp`, end to end: the proxy's requests, websockets and token requests on aiohttp.

The transport's own contract is tested in test_transport.py (both implementations); these check that a
whole proxy works on the aiohttp one: credentials injected, bodies streamed, a websocket tunnelled,
a refused handshake renewed once, a private CA trusted.
"""

from __future__ import annotations

import hashlib
import ssl
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import WSMsgType, web

from authproxy.server.runtime import RUNTIME
from tests.fakes.certs import ScratchCA
from tests.fakes.upstream import pattern_bytes, pattern_sha256


def route(upstream_url: str, token_url: str | None = None, **extra: Any) -> dict[str, Any]:
    cfg: dict[str, Any] = {"upstream": upstream_url, "transport": "aiohttp", **extra}
    if token_url is not None:
        cfg["auth"] = {"grant": "client_credentials", "token_url": token_url, "client_id": "c", "client_secret": "s"}
    return {"routes": {"api": cfg}}


def kinds(proxy: Any) -> set[str]:
    """Which transports the proxy made ("aiohttp/upstream", "native/tokens", ...)."""
    return set(proxy.app[RUNTIME].transports.connections())


async def test_get_echo_with_the_injected_token(make_proxy, upstream, token_server, client) -> None:
    proxy = await make_proxy(route(upstream.url, token_server.url))
    mine = {"Authorization": "Bearer mine"}
    bare = ("User-Agent", "Accept", "Accept-Encoding")  # the client sends none: nor may the proxy's transport
    async with client.get(proxy.at("/api/echo/x?q=a%20b"), headers=mine, skip_auto_headers=bare) as resp:
        assert resp.status == 200
        assert resp.headers["X-Echo-Method"] == "GET"
        assert await resp.read() == b""
    seen = upstream.last
    assert seen.raw_path == "/echo/x?q=a%20b"
    assert seen.headers.getall("Authorization") == ["Bearer at-1"]  # the client's own was replaced
    assert [name for name in bare if name in seen.headers] == []
    assert len(token_server.requests) == 1
    assert kinds(proxy) == {"aiohttp/tokens", "aiohttp/upstream"}


async def test_a_streamed_post_arrives_whole(make_proxy, upstream, client) -> None:
    size = 5 * 1024 * 1024 + 17

    async def body() -> AsyncIterator[bytes]:
        for chunk in pattern_bytes(size):
            yield chunk

    proxy = await make_proxy(route(upstream.url))
    async with client.post(proxy.at("/api/sink"), data=body()) as resp:  # no length: not buffered for a resend
        assert resp.status == 200
        assert await resp.json() == {"size": size, "sha256": pattern_sha256(size)}
    assert upstream.last.headers["Transfer-Encoding"] == "chunked"


async def test_a_large_download_streams_exactly(make_proxy, upstream, client) -> None:
    size = 9 * 1024 * 1024 + 5
    proxy = await make_proxy(route(upstream.url))
    digest, received = hashlib.sha256(), 0
    async with client.get(proxy.at(f"/api/big/{size}")) as resp:
        assert resp.status == 200
        async for chunk in resp.content.iter_any():
            digest.update(chunk)
            received += len(chunk)
    assert (received, digest.hexdigest()) == (size, pattern_sha256(size))


async def test_websocket_echo_through_the_proxy(make_proxy, upstream, token_server, client) -> None:
    proxy = await make_proxy(route(upstream.url, token_server.url))
    async with client.ws_connect(proxy.at("/api/ws?room=1"), protocols=("v1",), autoping=False) as ws:
        assert ws.protocol == "v1"
        await ws.send_str("hello")
        assert (await ws.receive()).data == "echo:hello"
        await ws.send_bytes(b"\x00\x01\x02" * 50_000)  # several reads' worth, both ways
        msg = await ws.receive()
        assert msg.type == WSMsgType.BINARY and msg.data == b"\x02\x01\x00" * 50_000
        await ws.send_str("close:4001")
        msg = await ws.receive()
        assert (msg.type, msg.data, msg.extra) == (WSMsgType.CLOSE, 4001, "bye")
    assert upstream.seen[0].headers.getall("Authorization") == ["Bearer at-1"]
    assert kinds(proxy) == {"aiohttp/tokens", "aiohttp/upstream"}


async def test_a_handshake_401_renews_the_token_once(make_proxy, upstream, token_server, client) -> None:
    proxy = await make_proxy(route(upstream.url, token_server.url))
    upstream.valid_tokens = {"at-2"}
    async with client.ws_connect(proxy.at("/api/ws")) as ws:
        await ws.send_str("after renewal")
        assert (await ws.receive()).data == "echo:after renewal"
    assert [s.headers["Authorization"] for s in upstream.seen] == ["Bearer at-1", "Bearer at-2"]
    assert len(token_server.requests) == 2


@pytest.fixture
async def tls_upstream(tmp_path) -> AsyncIterator[tuple[str, ScratchCA]]:
    ca = ScratchCA(tmp_path)
    issued = ca.issue("upstream")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(issued.cert, issued.key)

    async def handle(request: web.Request) -> web.Response:
        return web.json_response({"path": request.raw_path})

    app = web.Application()
    app.router.add_get("/{tail:.*}", handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0, ssl_context=context).start()
    yield f"https://127.0.0.1:{runner.addresses[0][1]}", ca
    await runner.cleanup()


async def test_a_private_ca_upstream(make_proxy, tls_upstream, client) -> None:
    url, ca = tls_upstream
    proxy = await make_proxy(route(url, tls={"ca_file": str(ca.files.cert)}))
    async with client.get(proxy.at("/api/x?y=1")) as resp:
        assert resp.status == 200
        assert await resp.json() == {"path": "/x?y=1"}
    unknown = await make_proxy(route(url))  # the system's CAs do not know this one
    async with client.get(unknown.at("/api/x")) as resp:
        assert resp.status == 502
        error = (await resp.json())["error"]
    assert error["code"] == "upstream_unreachable"
    assert "TLS handshake failed (CERTIFICATE_VERIFY_FAILED)" in error["message"]
