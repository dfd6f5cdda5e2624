"""Large bodies stream through in both directions without being buffered."""

from __future__ import annotations

import hashlib

from tests.fakes.upstream import pattern_bytes, pattern_sha256

SIZE = 100 * 1024 * 1024


async def test_100mb_download_streams_exactly(make_proxy, upstream, client) -> None:
    proxy = await make_proxy({"routes": {"api": {"upstream": upstream.url}}})
    digest, size = hashlib.sha256(), 0
    async with client.get(proxy.at(f"/api/big/{SIZE}")) as resp:
        assert resp.status == 200
        assert int(resp.headers["Content-Length"]) == SIZE
        async for chunk in resp.content.iter_any():
            digest.update(chunk)
            size += len(chunk)
    assert size == SIZE
    assert digest.hexdigest() == pattern_sha256(SIZE)


async def test_100mb_upload_streams_exactly(make_proxy, upstream, client) -> None:
    proxy = await make_proxy({"routes": {"api": {"upstream": upstream.url}}})

    async def body():
        for chunk in pattern_bytes(SIZE):
            yield chunk

    async with client.post(proxy.at("/api/sink"), data=body()) as resp:
        assert resp.status == 200
        result = await resp.json()
    assert result == {"size": SIZE, "sha256": pattern_sha256(SIZE)}


async def test_100mb_upload_with_content_length(make_proxy, upstream, client) -> None:
    proxy = await make_proxy({"routes": {"api": {"upstream": upstream.url}}})

    async def body():
        for chunk in pattern_bytes(SIZE):
            yield chunk

    async with client.put(proxy.at("/api/sink"), data=body(), headers={"Content-Length": str(SIZE)}) as resp:
        assert resp.status == 200
        assert (await resp.json())["size"] == SIZE
    assert upstream.last.headers["Content-Length"] == str(SIZE)
    assert "Transfer-Encoding" not in upstream.last.headers
