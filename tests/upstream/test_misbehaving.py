"""An upstream that misbehaves (issue 14, items 4 and 5), against both transports over real sockets.

Stray bytes: a second response shortly after the first, or a late body after a HEAD, a 204 or a 304,
must never reach the next request on a reused connection. Endless heads: a huge head, one huge header
value, too many headers or endless `103` interim answers are refused (`UpstreamBadResponseError`)
and the connection closed, without buffering past the limit.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import httptools
import pytest
from multidict import CIMultiDict

from authproxy.upstream import connection as native_connection
from authproxy.upstream.limits import MAX_HEAD
from authproxy.upstream.pool import NativeTransport
from authproxy.upstream.transport import Transport, UpstreamBadResponseError
from tests.fakes.clock import FakeClock
from tests.upstream.raw_server import RawServer, fetch, first_of, ok, until

STRAY = ok(b"stray: another client's answer")
HUGE = 64 * 1024 * 1024  # what the review sent: 64 MiB
PIECE = 1024 * 1024


@pytest.fixture
async def server() -> AsyncIterator[RawServer]:
    async with RawServer() as raw:
        yield raw


def next_request_or(late: asyncio.Event, server: RawServer) -> Callable[[], object]:
    """Wait for the client's next request on this connection (the stray then lands in its answer's place) or for
    the test's cue (the client went elsewhere: the stray lands on an idle connection)."""
    reader = server.reader
    assert reader is not None
    return lambda: first_of(reader.readuntil(b"\r\n\r\n"), late.wait())


# -- stray bytes never reach the next request -----------------------------------------------------------------


async def test_a_second_response_shortly_after_the_first_never_reaches_the_next_request(make_transport, server) -> None:
    """A released connection rests before it is reused; a byte from it meanwhile closes it."""
    clock = FakeClock()
    pool = make_transport(limit=8, rest=0.5, clock=clock)
    late = asyncio.Event()

    async def answer_twice(writer: asyncio.StreamWriter) -> None:
        then = next_request_or(late, server)
        writer.write(ok(b"one"))
        await writer.drain()
        await then()  # "0.3 s later": after the client's next request went out, or on cue
        writer.write(STRAY + ok(b"two"))  # the stray, then (if it read one) the answer to the next request
        await writer.drain()

    server.replies += [answer_twice, ok(b"two"), ok(b"three")]
    assert (await fetch(pool, server))[2] == b"one"
    assert (await fetch(pool, server))[2] == b"two"  # not the stray: the first connection still rests
    late.set()
    await asyncio.wait_for(until(lambda: server.closed == [1]), 5)  # the stray closed the idle connection
    await clock.advance(0.5)
    assert (await fetch(pool, server))[2] == b"three"
    assert server.connections == [1, 2, 2]  # rested, then reused


async def test_a_rest_never_makes_a_request_wait_at_the_limit(make_transport, server) -> None:
    """With no room for another connection, the one that rested longest is reused at once."""
    clock = FakeClock()
    pool = make_transport(limit=1, rest=0.5, clock=clock)
    server.replies += [ok(b"1"), ok(b"2")]
    assert [(await fetch(pool, server, connect_timeout=1.0))[2] for _ in range(2)] == [b"1", b"2"]
    assert server.connections == [1, 1]


@pytest.mark.parametrize(
    ("method", "head"),
    [
        ("HEAD", b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(STRAY)),
        ("GET", b"HTTP/1.1 304 Not Modified\r\nContent-Length: %d\r\n\r\n" % len(STRAY)),
        ("GET", b"HTTP/1.1 204 No Content\r\n\r\n"),
    ],
    ids=["head", "304", "204"],
)
async def test_a_late_body_after_an_answer_without_one_never_reaches_the_next_request(
    pool, server, method, head
) -> None:
    """An answer that cannot have a body (HEAD, 204, 304) leaves its connection unused: a body sent anyway, however
    late, would be read as the next request's answer. (`pool` has no rest: this rule alone must hold.)"""
    late = asyncio.Event()

    async def late_body(writer: asyncio.StreamWriter) -> None:
        then = next_request_or(late, server)
        writer.write(head)
        await writer.drain()
        await then()
        writer.write(STRAY + ok(b"next"))
        await writer.drain()

    server.replies += [late_body, ok(b"next")]
    assert (await fetch(pool, server, method))[2] == b""
    assert (await fetch(pool, server))[2] == b"next"
    assert server.connections == [1, 2]
    late.set()


async def test_an_interim_answer_leaves_its_connection_unused(pool, server) -> None:
    server.replies += [b"HTTP/1.1 100 Continue\r\n\r\n" + ok(b"1"), ok(b"2")]
    assert [(await fetch(pool, server))[2] for _ in range(2)] == [b"1", b"2"]
    assert server.connections == [1, 2]


# -- the response head is bounded -----------------------------------------------------------------------------


def flood(head: bytes, piece: bytes, total: int = HUGE) -> Callable[[asyncio.StreamWriter], object]:
    """A reply that sends `head`, then `piece` until `total` bytes went out (or the client hung up)."""

    async def send(writer: asyncio.StreamWriter) -> None:
        writer.write(head)
        for _ in range(total // len(piece)):
            writer.write(piece)
            await writer.drain()  # fails once the client closed the connection
            await asyncio.sleep(0)

    return send


async def refused(pool: Transport, server: RawServer, match: str) -> None:
    """The exchange fails with UpstreamBadResponseError naming the endpoint, and the connection is closed."""
    with pytest.raises(UpstreamBadResponseError, match=match) as err:
        await asyncio.wait_for(fetch(pool, server), 10)  # the bound only fails a hang
    assert server.url in str(err.value)
    await asyncio.wait_for(until(lambda: server.closed == [1]), 5)
    assert pool.connections()["open"] == 0


LINES = b"".join(b"X-Filler-%02d: %s\r\n" % (n, b"f" * 16_000) for n in range(64))  # 1 MiB of header lines


async def test_a_huge_head_is_refused(pool, server) -> None:
    server.replies.append(flood(b"HTTP/1.1 200 OK\r\n", LINES))
    await refused(pool, server, f"head .* larger than {MAX_HEAD} bytes")


async def test_a_huge_header_value_is_refused(pool, server) -> None:
    server.replies.append(flood(b"HTTP/1.1 200 OK\r\nX-Big: ", b"v" * PIECE))
    await refused(pool, server, f"head .* larger than {MAX_HEAD} bytes")


async def test_more_than_100_headers_are_refused(pool, server) -> None:
    hundred = [f"X-H{n}: {n}" for n in range(99)]  # and Content-Length: 100 in all
    server.replies += [ok(b"fine", *hundred), ok(b"no", *hundred, "X-One-Too-Many: 1")]
    assert (await fetch(pool, server))[2] == b"fine"
    with pytest.raises(UpstreamBadResponseError, match="more than 100 header fields") as err:
        await fetch(pool, server)
    assert server.url in str(err.value)
    await asyncio.wait_for(until(lambda: pool.connections()["open"] == 0), 5)


EARLY_HINTS = b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n"


async def test_endless_interim_answers_are_refused(pool, server) -> None:
    endless = flood(b"", EARLY_HINTS, 10_000_000 * len(EARLY_HINTS))
    server.replies += [EARLY_HINTS * 10 + ok(b"ten hints are fine"), endless]
    assert (await fetch(pool, server))[2] == b"ten hints are fine"
    with pytest.raises(UpstreamBadResponseError, match="more than 10 interim") as err:
        await asyncio.wait_for(fetch(pool, server), 10)  # never timed out before: each 103 is a sign of life
    assert server.url in str(err.value)
    await asyncio.wait_for(until(lambda: pool.connections()["open"] == 0), 5)


class CountingParser:
    """httptools' response parser, counting what the connection feeds it (all of it head, in these tests)."""

    fed: list[int] = []

    def __init__(self, protocol: object) -> None:
        self._parser = REAL_PARSER(protocol)
        CountingParser.fed.append(0)

    def feed_data(self, data: bytes) -> None:
        CountingParser.fed[-1] += len(data)
        self._parser.feed_data(data)

    def __getattr__(self, name: str) -> object:
        return getattr(self._parser, name)


REAL_PARSER = httptools.HttpResponseParser


@pytest.mark.parametrize(
    ("start", "piece", "refusal"),
    [
        (b"HTTP/1.1 200 OK\r\n", LINES, "larger than 16384 bytes"),
        (b"HTTP/1.1 200 OK\r\nX-Big: ", b"v" * PIECE, "larger than 16384 bytes"),
        (b"HTTP/1.1 200 OK\r\n", b"X-N: 1\r\n" * (PIECE // 8), "more than 100 header fields"),
    ],
    ids=["long-lines", "one-value", "tiny-lines"],
)
async def test_the_native_client_never_buffers_past_the_limits(server, monkeypatch, start, piece, refusal) -> None:
    """What the connection holds, not process RSS: the parser is given at most `max_head` bytes of a head, the
    headers kept are at most one past the count, and once refused the connection holds nothing."""
    monkeypatch.setattr(native_connection.httptools, "HttpResponseParser", CountingParser)
    CountingParser.fed = []
    held: list[int] = []
    connections: list[native_connection.Connection] = []
    original = native_connection.Connection.on_header

    def on_header(self: native_connection.Connection, name: bytes, value: bytes) -> None:
        held.append(len(self._raw) + 1)
        connections.append(self)
        original(self, name, value)

    monkeypatch.setattr(native_connection.Connection, "on_header", on_header)
    native = NativeTransport(limit=8, rest=0.0, max_head=16 * 1024)
    server.replies.append(flood(start, piece))
    try:
        with pytest.raises(UpstreamBadResponseError, match=refusal):
            await asyncio.wait_for(fetch(native, server), 10)
        assert len(CountingParser.fed) == 1 and CountingParser.fed[0] <= 16 * 1024  # not one read more
        assert max(held, default=0) <= 101
        assert all(conn._raw == [] and conn._parser is None and conn.transport is None for conn in connections)
        await asyncio.wait_for(until(lambda: server.closed == [1]), 5)
    finally:
        await native.close()


async def test_a_head_within_the_limit_passes_whole(pool, server) -> None:
    """The limit counts the head only: a head just under it and a big body in the same reads pass."""
    value = "v" * (MAX_HEAD - 200)
    body = b"b" * (4 * MAX_HEAD)
    server.replies.append(ok(body, f"X-Big: {value}"))
    status, headers, got = await fetch(pool, server)
    assert (status, headers["X-Big"], got) == (200, value, body)


async def test_limits_are_the_transports_parameters(make_transport, server) -> None:
    small = make_transport(limit=8, rest=0.0, max_head=1024, max_headers=5, max_interim=1)
    server.replies += [
        ok(b"", "X-A: " + "a" * 1100),
        ok(b"", *(f"X-{n}: 1" for n in range(5))),
        EARLY_HINTS * 2 + ok(b""),
    ]
    for match in ("larger than 1024 bytes", "more than 5 header fields", "more than 1 interim"):
        with pytest.raises(UpstreamBadResponseError, match=match):
            await asyncio.wait_for(
                small.request(server.endpoint, "GET", "/", CIMultiDict(), None, connect_timeout=5, read_timeout=5), 5
            )


@pytest.mark.parametrize("kind", ["native", "aiohttp"])
async def test_the_client_gets_502_upstream_bad_response(make_proxy, client, server, kind) -> None:
    server.replies.append(ok(b"", *(f"X-H{n}: {n}" for n in range(100))))
    proxy = await make_proxy({"routes": {"api": {"upstream": server.url, "transport": kind}}})
    async with client.get(proxy.at("/api/x")) as resp:
        assert resp.status == 502
        error = (await resp.json())["error"]
    assert (error["code"], error["route"]) == ("upstream_bad_response", "api")
    assert error["message"] == (
        f"refused the upstream's answer: the response head from {server.url} has more than 100 header fields"
    )
