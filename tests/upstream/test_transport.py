"""The upstream client (authproxy/upstream/) against scripted raw HTTP servers on real sockets.

Each server is an asyncio server on 127.0.0.1 that answers every request on a connection with the
next scripted reply (bytes, or a coroutine for stalls and half answers), so framing edge cases
(HEAD, 204, 1xx, bodies delimited by close, cut bodies, idle closes) are exact.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

import pytest
from multidict import CIMultiDict
from yarl import URL

from authproxy.upstream.pool import NativeTransport as UpstreamPool
from authproxy.upstream.response import HIGH_WATER
from authproxy.upstream.transport import (
    Endpoint,
    UnsafeHeaderError,
    UpstreamBrokenError,
    UpstreamConnectError,
    UpstreamTimeoutError,
)

Reply = bytes | Callable[[asyncio.StreamWriter], Awaitable[None]]


def ok(body: bytes = b"hello", *extra: str) -> bytes:
    head = [f"HTTP/1.1 200 OK\r\nContent-Length: {len(body)}\r\n", *(f"{h}\r\n" for h in extra), "\r\n"]
    return "".join(head).encode() + body


@dataclass
class RawServer:
    """Answers requests with `replies` in order; records request heads and which connection carried them."""

    replies: list[Reply] = field(default_factory=list)
    heads: list[bytes] = field(default_factory=list)
    bodies: list[bytes] = field(default_factory=list)
    connections: list[int] = field(default_factory=list)  # connection number per request
    url: str = ""
    endpoint: Endpoint | None = None  # one pool key for all of a test's requests
    _server: asyncio.Server | None = None
    _count: int = 0
    _writers: list[asyncio.StreamWriter] = field(default_factory=list)

    async def __aenter__(self) -> RawServer:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.url = f"http://127.0.0.1:{self._server.sockets[0].getsockname()[1]}"
        self.endpoint = Endpoint(URL(self.url))
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        for writer in self._writers:
            writer.close()
        await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._count += 1
        number = self._count
        self._writers.append(writer)
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                self.heads.append(head)
                self.connections.append(number)
                lines = head.lower().split(b"\r\n")
                length = next((int(line[15:]) for line in lines if line.startswith(b"content-length:")), 0)
                self.bodies.append(await reader.readexactly(length) if length else b"")
                reply = self.replies.pop(0)
                if isinstance(reply, bytes):
                    writer.write(reply)
                    await writer.drain()
                else:
                    await reply(writer)
                if writer.is_closing():
                    return
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()


@pytest.fixture
async def pool() -> AsyncIterator[UpstreamPool]:
    upstream_pool = UpstreamPool(limit=8)
    yield upstream_pool
    await upstream_pool.close()


async def fetch(
    pool: UpstreamPool, server: RawServer, method: str = "GET", body: object = None, read_timeout: float = 5.0
) -> tuple[int, CIMultiDict[str], bytes]:
    assert server.endpoint is not None
    response = await pool.request(
        server.endpoint,
        method,
        "/p?q=1",
        CIMultiDict({"X-Test": "1"}),
        body,
        connect_timeout=5.0,
        read_timeout=read_timeout,
    )
    try:
        data = b"".join([chunk async for chunk in response.chunks()])
    finally:
        response.release()
    return response.status, response.headers, data


@pytest.fixture
async def server() -> AsyncIterator[RawServer]:
    async with RawServer() as raw:
        yield raw


async def test_requests_reuse_one_connection_and_send_the_head_as_given(pool, server) -> None:
    server.replies += [ok(b"one"), ok(b"two", "Set-Cookie: a=1", "Set-Cookie: b=2")]
    assert (await fetch(pool, server))[2] == b"one"
    status, headers, body = await fetch(pool, server, "POST", b"payload")
    assert (status, body, headers.getall("Set-Cookie")) == (200, b"two", ["a=1", "b=2"])
    assert server.connections == [1, 1]
    assert server.heads[0].startswith(b"GET /p?q=1 HTTP/1.1\r\nHost: 127.0.0.1:")
    assert b"X-Test: 1\r\n" in server.heads[0] and b"Content-Length" not in server.heads[0]
    assert b"Content-Length: 7\r\n" in server.heads[1] and server.bodies[1] == b"payload"


@pytest.mark.parametrize(
    "first",
    [
        ("HEAD", b"HTTP/1.1 200 OK\r\nContent-Length: 5000\r\n\r\n"),  # a length, but no body: it was HEAD
        ("GET", b"HTTP/1.1 204 No Content\r\n\r\n"),
        ("GET", b"HTTP/1.1 304 Not Modified\r\nContent-Length: 10\r\n\r\n"),
    ],
    ids=["head", "204", "304"],
)
async def test_answers_without_a_body_leave_the_connection_usable(pool, server, first) -> None:
    method, reply = first
    server.replies += [reply, ok(b"next")]
    assert (await fetch(pool, server, method))[2] == b""
    assert (await fetch(pool, server))[2] == b"next"
    assert server.connections == [1, 1]


async def test_interim_1xx_answers_are_skipped(pool, server) -> None:
    server.replies.append(b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\n" + ok(b"final", "X-Final: yes"))
    status, headers, body = await fetch(pool, server)
    assert (status, body, headers.get("X-Final"), "Link" in headers) == (200, b"final", "yes", False)


async def test_chunked_and_close_delimited_bodies(pool, server) -> None:
    server.replies.append(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n")
    assert (await fetch(pool, server))[2] == b"abcde"

    async def until_close(writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.0 200 OK\r\n\r\nall of it")
        await writer.drain()
        writer.close()

    server.replies.append(until_close)
    assert (await fetch(pool, server))[2] == b"all of it"


async def test_a_cut_body_is_an_error_not_a_short_success(pool, server) -> None:
    async def cut(writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n12345")
        await writer.drain()
        writer.close()

    server.replies.append(cut)
    with pytest.raises(UpstreamBrokenError):
        await fetch(pool, server)


async def test_a_kept_alive_connection_closed_under_a_request_is_retried_once_if_replayable(pool, server) -> None:
    """The upstream closed an idle connection just as a request went out on it: no answer, not the request's fault."""

    async def hang_up(writer: asyncio.StreamWriter) -> None:
        writer.close()

    async def stream() -> AsyncIterator[bytes]:
        yield b"not replayable"

    server.replies += [ok(b"1"), hang_up, ok(b"2"), ok(b"3"), hang_up]
    assert (await fetch(pool, server))[2] == b"1"
    assert (await fetch(pool, server, "PUT", b"body"))[2] == b"2"  # bytes: sent again on a new connection
    assert server.connections == [1, 1, 2] and server.bodies[1:] == [b"body", b"body"]
    assert (await fetch(pool, server))[2] == b"3"
    with pytest.raises(UpstreamBrokenError):  # a streamed body is gone: it cannot be sent again
        await fetch(pool, server, "PUT", stream())
    assert server.connections == [1, 1, 2, 2, 2]


async def test_a_post_is_never_sent_twice(pool, server) -> None:
    """The upstream may have charged the card before the connection dropped: a 502, not a second charge."""

    async def hang_up(writer: asyncio.StreamWriter) -> None:
        writer.close()

    server.replies += [ok(b"1"), hang_up, ok(b"unused")]
    assert (await fetch(pool, server))[2] == b"1"
    with pytest.raises(UpstreamBrokenError):
        await fetch(pool, server, "POST", b"charge #2")
    assert server.bodies.count(b"charge #2") == 1


async def test_a_silent_upstream_times_out_between_reads(pool, server) -> None:
    never = asyncio.Event()

    async def stall(writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n12")
        await writer.drain()
        await never.wait()

    server.replies.append(stall)
    with pytest.raises(UpstreamTimeoutError):
        await fetch(pool, server, read_timeout=0.2)
    never.set()


async def test_a_slow_reader_pauses_the_upstream_instead_of_buffering(pool, server) -> None:
    size = 8 * 1024 * 1024
    server.replies.append(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % size + b"x" * size)
    response = await pool.request(
        server.endpoint, "GET", "/", CIMultiDict(), None, connect_timeout=5.0, read_timeout=5.0
    )
    conn = response._source
    await asyncio.wait_for(_until(lambda: conn._reading_paused), 5)
    peak = response.buffered
    received = 0
    async for chunk in response.chunks():
        received += len(chunk)
        peak = max(peak, response.buffered)
    response.release()
    assert received == size
    assert peak <= HIGH_WATER + 512 * 1024  # one read past the mark at most


async def test_a_line_break_in_a_header_value_is_never_sent(pool, server) -> None:
    server.replies.append(ok())
    with pytest.raises(UnsafeHeaderError):
        await pool.request(
            server.endpoint,
            "GET",
            "/",
            CIMultiDict({"Authorization": "Bearer x\r\nX-Injected: 1"}),
            None,
            connect_timeout=5.0,
            read_timeout=5.0,
        )
    assert server.heads == []
    assert (await fetch(pool, server))[0] == 200  # the connection went back unused


async def test_the_limit_caps_connections_and_every_request_completes(server) -> None:
    gate = asyncio.Event()

    async def slow(writer: asyncio.StreamWriter) -> None:
        await gate.wait()
        writer.write(ok(b"x"))
        await writer.drain()

    server.replies += [slow] * 6
    small = UpstreamPool(limit=2)
    try:
        tasks = [asyncio.ensure_future(fetch(small, server)) for _ in range(6)]
        await asyncio.wait_for(_until(lambda: len(server.heads) == 2), 5)
        assert small.connections()["open"] == 2
        gate.set()
        assert [r[2] for r in await asyncio.gather(*tasks)] == [b"x"] * 6
        assert set(server.connections) <= {1, 2}
    finally:
        await small.close()


async def test_waiting_for_a_free_connection_is_bounded_and_passes_its_turn_on(server) -> None:
    gate = asyncio.Event()

    async def slow(writer: asyncio.StreamWriter) -> None:
        await gate.wait()
        writer.write(ok(b"x"))
        await writer.drain()

    server.replies += [slow, ok(b"y"), ok(b"z")]
    small = UpstreamPool(limit=1)
    try:
        first = asyncio.ensure_future(fetch(small, server))
        await asyncio.wait_for(_until(lambda: len(server.heads) == 1), 5)
        with pytest.raises(UpstreamTimeoutError):  # the only connection stays busy past connect_timeout
            await small.request(server.endpoint, "GET", "/", CIMultiDict(), None, connect_timeout=0.1, read_timeout=5)
        gone = asyncio.ensure_future(fetch(small, server))  # a waiter whose client leaves when it is woken
        waiting = asyncio.ensure_future(fetch(small, server))
        await asyncio.wait_for(_until(lambda: small.connections()["waiting"] >= 2), 5)
        gate.set()
        await first
        gone.cancel()
        assert (await asyncio.wait_for(waiting, 5))[2] in (b"y", b"z")  # the turn was passed on, not lost
    finally:
        await small.close()


@pytest.mark.parametrize("coding", ["chunked, gzip", "xchunked"])
async def test_a_body_whose_last_coding_is_not_chunked_ends_with_the_connection(pool, server, coding) -> None:
    async def until_close(writer: asyncio.StreamWriter) -> None:
        writer.write(f"HTTP/1.1 200 OK\r\nTransfer-Encoding: {coding}\r\n\r\nraw bytes".encode())
        await writer.drain()
        writer.close()

    server.replies.append(until_close)
    assert (await fetch(pool, server))[2] == b"raw bytes"


async def test_a_101_to_a_plain_request_is_a_broken_exchange(pool, server) -> None:
    server.replies.append(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\nConnection: Upgrade\r\n\r\n")
    with pytest.raises(UpstreamBrokenError):
        await fetch(pool, server)


async def test_an_unencodable_header_value_is_refused_and_the_connection_kept(pool, server) -> None:
    server.replies += [ok(b"1"), ok(b"2")]
    assert (await fetch(pool, server))[2] == b"1"
    with pytest.raises(UnsafeHeaderError):
        await pool.request(
            server.endpoint, "GET", "/", CIMultiDict({"X-Bad": "\ud800"}), None, connect_timeout=5, read_timeout=5
        )
    assert (await fetch(pool, server))[2] == b"2" and server.connections == [1, 1]


async def test_refused_connections_say_why(pool) -> None:
    with pytest.raises(UpstreamConnectError) as err:
        await pool.request(
            Endpoint(URL("http://127.0.0.1:9")),
            "GET",
            "/",
            CIMultiDict(),
            None,
            connect_timeout=5,
            read_timeout=5,
        )
    assert "refused" in err.value.reason.lower()


async def _until(predicate: Callable[[], bool]) -> None:
    while not predicate():
        await asyncio.sleep(0)
