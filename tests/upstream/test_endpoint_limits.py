"""Connection limits per endpoint (issue 14, item 2), against both transports over real sockets.

One pool serves every route; an endpoint's own `limit` keeps one route's slow upstream (or slow clients)
from taking every connection: its requests wait for its own connections only, the others go on.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator

import pytest
from multidict import CIMultiDict
from yarl import URL

from authproxy.upstream.transport import Endpoint, UpstreamTimeoutError
from tests.upstream.raw_server import RawServer, fetch, ok, until


@pytest.fixture
async def server() -> AsyncIterator[RawServer]:
    async with RawServer() as raw:
        yield raw


@pytest.fixture
async def other() -> AsyncIterator[RawServer]:
    async with RawServer() as raw:
        yield raw


def slow(gate: asyncio.Event, body: bytes) -> object:
    async def reply(writer: asyncio.StreamWriter) -> None:
        await gate.wait()
        writer.write(ok(body))
        await writer.drain()

    return reply


async def test_a_full_endpoint_holds_only_its_own_requests(make_transport, server, other) -> None:
    """Endpoint A (limit 2) has two slow requests: B's go through, A's third waits and completes after one of them."""
    server.endpoint = Endpoint(URL(server.url), limit=2)
    gate = asyncio.Event()
    server.replies += [slow(gate, b"a1"), slow(gate, b"a2"), ok(b"a3")]
    other.replies += [ok(b"b1"), ok(b"b2"), ok(b"b3")]
    pool = make_transport(limit=8, rest=0.0)
    busy = [asyncio.ensure_future(fetch(pool, server)) for _ in range(2)]
    await asyncio.wait_for(until(lambda: len(server.heads) == 2), 5)
    third = asyncio.ensure_future(fetch(pool, server))
    await asyncio.wait_for(until(lambda: pool.connections()["waiting"] == 1), 5)
    assert [(await asyncio.wait_for(fetch(pool, other), 5))[2] for _ in range(3)] == [b"b1", b"b2", b"b3"]
    assert len(server.heads) == 2 and not third.done()  # A's third still waits for one of A's two
    gate.set()
    assert sorted([r[2] for r in await asyncio.gather(*busy)]) == [b"a1", b"a2"]
    assert (await asyncio.wait_for(third, 5))[2] == b"a3"
    assert set(server.connections) <= {1, 2}  # never a third connection to A
    assert pool.connections()["waiting"] == 0


async def test_the_global_limit_still_applies(make_transport, server, other) -> None:
    server.endpoint = Endpoint(URL(server.url), limit=4)
    gate = asyncio.Event()
    server.replies += [slow(gate, b"a1"), slow(gate, b"a2")]
    other.replies.append(ok(b"b"))
    pool = make_transport(limit=2, rest=0.0)
    busy = [asyncio.ensure_future(fetch(pool, server)) for _ in range(2)]
    await asyncio.wait_for(until(lambda: len(server.heads) == 2), 5)
    waiting = asyncio.ensure_future(fetch(pool, other))
    await asyncio.wait_for(until(lambda: pool.connections()["waiting"] == 1), 5)
    gate.set()
    assert (await asyncio.wait_for(waiting, 5))[2] == b"b"
    await asyncio.gather(*busy)


async def test_waiting_for_a_full_endpoint_is_bounded_and_names_its_limit(make_transport, server, other) -> None:
    server.endpoint = Endpoint(URL(server.url), limit=1)
    gate = asyncio.Event()
    server.replies += [slow(gate, b"a1"), ok(b"a2")]
    pool = make_transport(limit=8, rest=0.0)
    busy = asyncio.ensure_future(fetch(pool, server))
    await asyncio.wait_for(until(lambda: len(server.heads) == 1), 5)
    message = rf"the 1 connection to {re.escape(server.url)} \(the endpoint's limit\) stayed busy for 0\.1 s"
    with pytest.raises(UpstreamTimeoutError, match=message):
        await pool.request(server.endpoint, "GET", "/", CIMultiDict(), None, connect_timeout=0.1, read_timeout=5)
    assert pool.connections()["waiting"] == 0
    gate.set()
    assert (await busy)[2] == b"a1"
    assert (await asyncio.wait_for(fetch(pool, server), 5))[2] == b"a2"  # the permit came back


def test_an_endpoint_limit_is_at_least_one() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        Endpoint(URL("http://127.0.0.1:9"), limit=0)
