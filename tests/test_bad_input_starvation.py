"""Slow clients must not starve the proxy (issue 14, item 2), reproduced over real sockets.

A body trickled one chunk at a time just inside `client_timeout`, a client that never reads its
response, and 515 such clients on one route while another route must keep answering.
"""

from __future__ import annotations

import asyncio
import time

from authproxy.server.runtime import RUNTIME
from tests.conftest import wait_until
from tests.fakes.upstream import FakeUpstream


async def connect(url: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    host, port = url.removeprefix("http://").rsplit(":", 1)
    return await asyncio.open_connection(host, int(port))


async def test_a_trickled_body_is_cut_at_the_body_deadline(make_proxy, upstream: FakeUpstream) -> None:
    """One chunk every 0.25 s never trips client_timeout (1 s: wide, so a loaded CI machine does not trip it);
    body_timeout (1.5 s in all) ends it."""
    proxy = await make_proxy(
        {"limits": {"client_timeout": 1.0, "body_timeout": 1.5}, "routes": {"api": {"upstream": upstream.url}}}
    )
    reader, writer = await connect(proxy.url)
    writer.write(b"POST /api/sink HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n")
    answer = b""
    started = time.monotonic()
    try:
        for _ in range(32):  # 8 s of trickling at most: without a body deadline it would go on for ever
            writer.write(b"1\r\nx\r\n")
            await writer.drain()
            try:
                answer = await asyncio.wait_for(reader.read(4096), 0.25)  # clock-ok: the client's own pace
            except TimeoutError:
                continue
            break
    finally:
        writer.close()
    assert answer.startswith(b"HTTP/1.1 408"), answer
    assert b"limits.body_timeout (1.5 s)" in answer
    assert time.monotonic() - started < 6


async def test_a_client_that_stops_reading_loses_both_connections(make_proxy, upstream: FakeUpstream, logs) -> None:
    """64 MiB to a client that reads only the head: after send_timeout both connections are closed (before,
    the upstream's silence timer kept resting while the client was the slow side, so it held on for ever)."""
    proxy = await make_proxy({"limits": {"send_timeout": 0.5}, "routes": {"api": {"upstream": upstream.url}}})
    reader, writer = await connect(proxy.url)
    writer.write(b"GET /api/big/67108864 HTTP/1.1\r\nHost: localhost\r\n\r\n")
    await writer.drain()
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    assert head.startswith(b"HTTP/1.1 200")
    transports = proxy.app[RUNTIME].transports
    # The client reads nothing more (its stream reader stops taking bytes from the socket once a little is
    # buffered): within send_timeout the proxy gives up on it and closes the upstream connection too.
    await wait_until(lambda: any(e["event"] == "client_not_reading" for e in logs.events), timeout=10)
    await wait_until(lambda: transports.connections()["native/upstream"]["open"] == 0, timeout=10)
    received = len(head) + await asyncio.wait_for(_until_closed(reader), 10)  # then EOF: the connection is gone
    writer.close()
    assert received < 67108864
    line = next(e for e in logs.events if e["event"] == "request")
    assert line["error"] == "client_not_reading" and line["bytes"] < 67108864


async def _until_closed(reader: asyncio.StreamReader) -> int:
    """Read until the proxy's close; the bytes read (what it had sent before giving up)."""
    total = 0
    try:
        while data := await reader.read(1 << 20):
            total += len(data)
    except ConnectionError:
        pass
    return total


async def test_slow_uploads_on_one_route_do_not_starve_another(make_proxy, upstream: FakeUpstream, client) -> None:
    """The review's attack: 515 clients trickling chunked POSTs on route A took all 512 upstream connections,
    so route B waited and failed with 504. Route A's fair share leaves B its connections."""
    proxy = await make_proxy(
        {
            "limits": {"client_timeout": 60},
            "routes": {
                "a": {"upstream": upstream.url, "connect_timeout": 1},
                "b": {"upstream": upstream.url, "connect_timeout": 1},
            },
        }
    )
    slow: list[asyncio.StreamWriter] = []
    try:
        for _ in range(515):
            _, writer = await connect(proxy.url)
            writer.write(b"POST /a/sink HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nx\r\n")
            slow.append(writer)
        await asyncio.gather(*(w.drain() for w in slow))
        transports = proxy.app[RUNTIME].transports
        await wait_until(lambda: transports.connections()["native/upstream"]["open"] >= 256, timeout=20)
        started = time.monotonic()
        async with client.get(proxy.at("/b/x")) as resp:
            assert resp.status == 200, await resp.text()
        assert time.monotonic() - started < 1  # its normal latency, not a wait for a free connection
        assert proxy.app[RUNTIME].transports.connections()["native/upstream"]["open"] <= 512
    finally:
        for writer in slow:
            writer.close()
