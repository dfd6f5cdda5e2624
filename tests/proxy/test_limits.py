"""Limits: body size (413), per-route concurrency (503 overloaded), slow clients (408 / closed)."""

from __future__ import annotations

import asyncio

import pytest

from tests.conftest import raw_exchange


def cfg(upstream_url: str, **limits: object) -> dict:
    return {
        "limits": {"max_body": 1000, "client_timeout": 0.3, **limits},
        "routes": {"api": {"upstream": upstream_url, "max_concurrent": 1}},
    }


async def test_body_over_max_with_content_length_413(make_proxy, upstream, client) -> None:
    proxy = await make_proxy(cfg(upstream.url))
    async with client.post(proxy.at("/api/x"), data=b"x" * 1001) as resp:
        assert resp.status == 413
        assert (await resp.json())["error"]["code"] == "body_too_large"
    async with client.post(proxy.at("/api/x"), data=b"x" * 1000) as resp:
        assert resp.status == 200
    assert [len(s.body) for s in upstream.seen] == [1000]


async def test_chunked_body_over_max_413(make_proxy, upstream, client) -> None:
    proxy = await make_proxy(cfg(upstream.url))

    async def body():
        for _ in range(5):
            yield b"y" * 400

    async with client.post(proxy.at("/api/sink"), data=body()) as resp:
        assert resp.status == 413
        assert (await resp.json())["error"]["code"] == "body_too_large"


async def test_route_max_concurrent_503_overloaded(make_proxy, upstream, client) -> None:
    proxy = await make_proxy(cfg(upstream.url, client_timeout=30))
    async with client.get(proxy.at("/api/chunks/1")) as first:  # holds the route's only slot
        async with client.get(proxy.at("/api/x")) as resp:
            assert resp.status == 503
            assert (await resp.json())["error"]["code"] == "overloaded"
            assert resp.headers["Retry-After"] == "1"
        upstream.chunk_gate.put_nowait(None)
        assert await first.read() == b"data: 0\n\n"
    async with client.get(proxy.at("/api/x")) as resp:
        assert resp.status == 200


async def test_slow_body_408_and_others_still_served(make_proxy, upstream, client) -> None:
    config = cfg(upstream.url)
    del config["routes"]["api"]["max_concurrent"]
    proxy = await make_proxy(config)
    host, port = proxy.url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(b"POST /api/x HTTP/1.1\r\nHost: localhost\r\nContent-Length: 10\r\n\r\nhalf!")
    await writer.drain()
    async with client.get(proxy.at("/api/fast")) as resp:
        assert resp.status == 200
    answer = await asyncio.wait_for(reader.read(4096), 5)
    writer.close()
    assert answer.startswith(b"HTTP/1.1 408") and b'"code": "client_timeout"' in answer
    assert [s.raw_path for s in upstream.seen] == ["/fast"]


@pytest.mark.parametrize("payload", [b"GET /api/x HTTP/1.1\r\nHost: loc", b""])
async def test_slow_or_idle_connection_closed(make_proxy, upstream, payload) -> None:
    proxy = await make_proxy(cfg(upstream.url))
    raw = await raw_exchange(proxy.url, payload, read_timeout=5)
    assert raw == b""  # closed after client_timeout without an answer
    assert upstream.seen == []
