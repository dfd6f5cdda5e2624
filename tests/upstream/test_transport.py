"""The upstream client (authproxy/upstream/) against scripted raw HTTP servers on real sockets.

The servers (raw_server.RawServer) answer every request on a connection with the next scripted reply,
so framing edge cases (HEAD, 204, 1xx, bodies delimited by close, cut bodies, idle closes) are exact.

Every test that takes `pool` or `make_transport` runs against both transports (the native client and
the one on aiohttp): the interface is the contract, whichever implementation is behind it.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from multidict import CIMultiDict
from yarl import URL

from authproxy.upstream.aiohttp_transport import AiohttpTransport
from authproxy.upstream.aiohttp_tunnel import AiohttpTunnel
from authproxy.upstream.pool import NativeTransport
from authproxy.upstream.response import HIGH_WATER, NativeResponse, NativeTunnel
from authproxy.upstream.tls import TlsSettings
from authproxy.upstream.transport import (
    BodySourceError,
    Endpoint,
    Transport,
    Tunnel,
    UnsafeHeaderError,
    UpstreamBrokenError,
    UpstreamConnectError,
    UpstreamResponse,
    UpstreamTimeoutError,
)
from tests.fakes.certs import ScratchCA
from tests.fakes.clock import FakeClock
from tests.upstream.raw_server import TRANSPORTS, RawServer, fetch, ok, until


def reading_paused(stream: UpstreamResponse | Tunnel) -> bool:
    """Whether the transport stopped reading from the upstream: the one thing the interface does not show."""
    if isinstance(stream, NativeResponse | NativeTunnel):
        return stream._source._reading_paused  # type: ignore[union-attr]
    if isinstance(stream, AiohttpTunnel):
        return stream._protocol._reading_paused
    connection = stream._resp.connection  # type: ignore[union-attr]
    return connection is not None and connection.protocol._reading_paused


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


async def test_nothing_is_added_to_the_head_but_host_and_framing(pool, server) -> None:
    """No User-Agent, Accept, Content-Type or compression offer: the upstream sees what the caller gave."""

    async def stream() -> AsyncIterator[bytes]:
        yield b"ab"
        yield b""  # an empty piece must not end a chunked body early
        yield b"c"

    server.replies += [ok(b"1"), ok(b"2"), ok(b"3"), ok(b"4")]
    for method, body in [("GET", None), ("DELETE", None), ("POST", None), ("PUT", stream())]:
        await fetch(pool, server, method, body)
    lines = [set(head.split(b"\r\n")[1:-2]) for head in server.heads]
    host = b"Host: " + server.url.removeprefix("http://").encode()
    assert lines[0] == {host, b"X-Test: 1"}
    assert lines[1] == {host, b"X-Test: 1"}  # a bodiless DELETE has no framing
    assert lines[2] == {host, b"X-Test: 1", b"Content-Length: 0"}
    assert lines[3] == {host, b"X-Test: 1", b"Transfer-Encoding: chunked"}
    assert server.bodies[3] == b"abc"


async def test_the_target_goes_byte_for_byte(pool, server) -> None:
    server.replies.append(ok())
    target = "/a%2Fb/../c;p=1?x=%20y&z=%E2%9C%93&&k"
    response = await pool.request(
        server.endpoint, "GET", target, CIMultiDict(), None, connect_timeout=5.0, read_timeout=5.0
    )
    response.release()
    assert server.heads[0].startswith(f"GET {target} HTTP/1.1\r\n".encode())


@pytest.mark.parametrize(
    "first",
    [
        ("HEAD", b"HTTP/1.1 200 OK\r\nContent-Length: 5000\r\n\r\n"),  # a length, but no body: it was HEAD
        ("GET", b"HTTP/1.1 204 No Content\r\n\r\n"),
        ("GET", b"HTTP/1.1 304 Not Modified\r\nContent-Length: 10\r\n\r\n"),
    ],
    ids=["head", "204", "304"],
)
async def test_answers_without_a_body_end_at_their_head_and_their_connection_is_closed(pool, server, first) -> None:
    """Complete at once (no wait for a body that is not coming); not reused, as a body sent anyway would be read as
    the next answer (test_misbehaving.py)."""
    method, reply = first
    server.replies += [reply, ok(b"next")]
    assert (await fetch(pool, server, method))[2] == b""
    assert (await fetch(pool, server))[2] == b"next"
    assert server.connections == [1, 2]
    await asyncio.wait_for(until(lambda: server.closed == [1]), 5)


async def test_interim_1xx_answers_are_skipped(pool, server) -> None:
    server.replies.append(b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\n" + ok(b"final", "X-Final: yes"))
    status, headers, body = await fetch(pool, server)
    assert (status, body, headers.get("X-Final"), "Link" in headers) == (200, b"final", "yes", False)


async def test_a_redirect_is_returned_not_followed(pool, server) -> None:
    server.replies += [
        b"HTTP/1.1 302 Found\r\nLocation: /elsewhere\r\nContent-Length: 5\r\n\r\nmoved",
        ok(b"landed"),
    ]
    status, headers, body = await fetch(pool, server)
    assert (status, headers["Location"], body) == (302, "/elsewhere", b"moved")
    assert len(server.heads) == 1 and server.replies == [ok(b"landed")]  # nobody went to /elsewhere


async def test_chunked_and_close_delimited_bodies(pool, server) -> None:
    server.replies.append(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n")
    assert (await fetch(pool, server))[2] == b"abcde"

    async def until_close(writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.0 200 OK\r\n\r\nall of it")
        await writer.drain()
        writer.close()

    server.replies.append(until_close)
    assert (await fetch(pool, server))[2] == b"all of it"


async def test_a_compressed_body_passes_untouched(pool, server) -> None:
    raw = b"\x1f\x8b\x08\x00not really gzip"
    server.replies.append(ok(raw, "Content-Encoding: gzip"))
    status, headers, body = await fetch(pool, server)
    assert (status, headers["Content-Encoding"], body) == (200, "gzip", raw)


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


async def test_a_request_failing_on_a_new_connection_is_not_sent_again(pool, server) -> None:
    async def hang_up(writer: asyncio.StreamWriter) -> None:
        writer.close()

    server.replies += [hang_up, ok(b"unused")]
    with pytest.raises(UpstreamBrokenError):
        await fetch(pool, server)
    assert server.connections == [1]


@pytest.mark.parametrize("failure", [BodySourceError, OSError])
async def test_a_failing_body_source_is_a_broken_exchange(pool, server, failure) -> None:
    """The client's body broke off: the request is void, and the upstream sees the connection end mid-body."""

    async def stream() -> AsyncIterator[bytes]:
        yield b"part"
        raise failure("the client went away")

    with pytest.raises(UpstreamBrokenError, match="could not be read from the client"):
        await fetch(pool, server, "POST", stream())
    await asyncio.wait_for(until(lambda: server.closed == [1]), 5)
    assert server.heads and server.bodies == []  # the chunked body never ended


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


async def test_an_upstream_that_stops_reading_a_streamed_body_times_out(pool, server) -> None:
    never = asyncio.Event()
    piece = b"z" * 1024 * 1024

    async def stall(writer: asyncio.StreamWriter) -> None:
        await never.wait()

    async def stream() -> AsyncIterator[bytes]:
        for _ in range(256):  # far more than the sockets' buffers hold
            yield piece

    server.read_bodies = False
    server.replies.append(stall)
    with pytest.raises(UpstreamTimeoutError):
        await asyncio.wait_for(fetch(pool, server, "PUT", stream(), read_timeout=0.2), 10)  # a hang fails
    never.set()


async def test_a_response_that_is_not_http_is_a_broken_exchange(pool, server) -> None:
    server.replies.append(b"HTTP/1.1 OK 200\r\nContent-Length: 2\r\n\r\nhi")
    with pytest.raises(UpstreamBrokenError, match=r"not usable HTTP/1\.1"):
        await fetch(pool, server)


async def test_a_slow_reader_pauses_the_upstream_instead_of_buffering(pool, server) -> None:
    size = 8 * 1024 * 1024
    server.replies.append(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % size + b"x" * size)
    response = await pool.request(
        server.endpoint, "GET", "/", CIMultiDict(), None, connect_timeout=5.0, read_timeout=5.0
    )
    await asyncio.wait_for(until(lambda: reading_paused(response)), 5)
    assert HIGH_WATER <= response.buffered <= HIGH_WATER + 512 * 1024  # paused at the mark, not at 8 MiB
    peak = response.buffered
    received = 0
    async for chunk in response.chunks():
        received += len(chunk)
        peak = max(peak, response.buffered)
    response.release()
    assert received == size and response.buffered == 0
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


@pytest.mark.parametrize("kind", ["native", "aiohttp"])
async def test_a_line_break_in_a_header_name_is_never_sent(server, kind) -> None:
    """A route's configured header names are not checked by HTTP parsing: the transport is the last guard."""
    server.replies.append(ok())
    transport = TRANSPORTS[kind](limit=8)
    try:
        with pytest.raises(UnsafeHeaderError):
            response = await transport.request(
                server.endpoint,
                "GET",
                "/",
                CIMultiDict({"X-A\r\nX-Injected": "1"}),
                None,
                connect_timeout=5.0,
                read_timeout=5.0,
            )
            response.release()
        assert server.heads == []
    finally:
        await transport.close()


async def test_an_answer_with_connection_close_is_not_reused(pool, server) -> None:
    server.replies += [ok(b"1", "Connection: close"), b"HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\n2", ok(b"3")]
    assert [(await fetch(pool, server))[2] for _ in range(3)] == [b"1", b"2", b"3"]
    assert server.connections == [1, 2, 3]  # each upstream kept its socket open: the client closed them
    await asyncio.wait_for(until(lambda: server.closed == [1, 2]), 5)


async def test_the_limit_caps_connections_and_every_request_completes(make_transport, server) -> None:
    gate = asyncio.Event()

    async def slow(writer: asyncio.StreamWriter) -> None:
        await gate.wait()
        writer.write(ok(b"x"))
        await writer.drain()

    server.replies += [slow] * 6
    small = make_transport(limit=2)
    tasks = [asyncio.ensure_future(fetch(small, server)) for _ in range(6)]
    await asyncio.wait_for(until(lambda: len(server.heads) == 2 and small.connections()["waiting"] == 4), 5)
    assert small.connections() == {"open": 2, "idle": 0, "waiting": 4}
    gate.set()
    assert [r[2] for r in await asyncio.gather(*tasks)] == [b"x"] * 6
    assert set(server.connections) <= {1, 2}
    assert small.connections() == {"open": 2, "idle": 2, "waiting": 0}


async def test_waiting_for_a_free_connection_is_bounded_and_passes_its_turn_on(make_transport, server) -> None:
    gate = asyncio.Event()

    async def slow(writer: asyncio.StreamWriter) -> None:
        await gate.wait()
        writer.write(ok(b"x"))
        await writer.drain()

    server.replies += [slow, ok(b"y"), ok(b"z")]
    small = make_transport(limit=1)
    first = asyncio.ensure_future(fetch(small, server))
    await asyncio.wait_for(until(lambda: len(server.heads) == 1), 5)
    with pytest.raises(UpstreamTimeoutError):  # the only connection stays busy past connect_timeout
        await small.request(server.endpoint, "GET", "/", CIMultiDict(), None, connect_timeout=0.1, read_timeout=5)
    gone = asyncio.ensure_future(fetch(small, server))  # a waiter whose client leaves when it is woken
    waiting = asyncio.ensure_future(fetch(small, server))
    await asyncio.wait_for(until(lambda: small.connections()["waiting"] >= 2), 5)
    gate.set()
    await first
    gone.cancel()
    assert (await asyncio.wait_for(waiting, 5))[2] in (b"y", b"z")  # the turn was passed on, not lost


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


async def upgrade(pool: Transport, server: RawServer) -> UpstreamResponse:
    assert server.endpoint is not None
    # websocket: what the proxy tunnels; aiohttp's pure-Python parser takes over no other protocol (llhttp does)
    headers = CIMultiDict({"Connection": "Upgrade", "Upgrade": "websocket"})
    return await pool.request(
        server.endpoint, "GET", "/tunnel", headers, None, connect_timeout=5.0, read_timeout=5.0, upgrade=True
    )


SWITCH = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n"


async def test_an_upgrade_answered_101_gives_a_raw_tunnel(pool, server) -> None:
    async def echo_upper(writer: asyncio.StreamWriter) -> None:
        writer.write(SWITCH + b"early")  # bytes of the new protocol in the same packet as the 101
        await writer.drain()
        assert server.reader is not None
        writer.write((await server.reader.readexactly(5)).upper())
        await writer.drain()
        writer.close()

    server.replies.append(echo_upper)
    response = await upgrade(pool, server)
    assert (response.status, response.headers["Upgrade"]) == (101, "websocket")
    tunnel = response.tunnel()
    assert await _read_exactly(tunnel, 5) == b"early"
    await tunnel.write(b"hello")
    assert await _read_exactly(tunnel, 5) == b"HELLO"
    assert await tunnel.read() == b""  # the upstream closed its side
    assert await tunnel.read() == b""
    tunnel.close()
    tunnel.close()  # idempotent
    await asyncio.wait_for(until(lambda: pool.connections()["open"] == 0), 5)


async def test_a_tunnel_write_waits_while_the_upstream_is_not_reading(pool, server) -> None:
    size = 32 * 1024 * 1024  # more than the sockets' buffers hold
    reading = asyncio.Event()

    async def slow_sink(writer: asyncio.StreamWriter) -> None:
        writer.write(SWITCH)
        await writer.drain()
        await reading.wait()
        assert server.reader is not None
        received = len(await server.reader.readexactly(size))
        writer.write(b"%d" % received)
        await writer.drain()
        writer.close()

    server.replies.append(slow_sink)
    tunnel = (await upgrade(pool, server)).tunnel()
    write = asyncio.ensure_future(tunnel.write(b"x" * size))
    for _ in range(200):
        await asyncio.sleep(0)
    assert not write.done()  # held back: the upstream takes nothing
    reading.set()
    await asyncio.wait_for(write, 10)
    assert await _read_exactly(tunnel, len(str(size))) == str(size).encode()
    tunnel.close()


async def test_a_tunnel_read_pauses_the_upstream_while_nobody_reads(pool, server) -> None:
    size = 32 * 1024 * 1024
    sent = asyncio.Event()

    async def flood(writer: asyncio.StreamWriter) -> None:
        writer.write(SWITCH + b"y" * size)
        await writer.drain()
        sent.set()
        assert server.reader is not None
        await server.reader.read()  # until the client closes

    server.replies.append(flood)
    tunnel = (await upgrade(pool, server)).tunnel()
    await asyncio.wait_for(until(lambda: reading_paused(tunnel)), 5)
    for _ in range(200):
        await asyncio.sleep(0)
    assert reading_paused(tunnel) and not sent.is_set()  # the rest waits in the upstream, not in our memory
    assert await _read_exactly(tunnel, size) == b"y" * size
    assert sent.is_set()
    tunnel.close()
    await asyncio.wait_for(until(lambda: server.closed == [1]), 5)  # closing ends the upstream's connection


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


async def test_tls_upstreams_are_verified_and_failures_say_why(pool, tmp_path: Path) -> None:
    ca = ScratchCA(tmp_path)
    issued = ca.issue("upstream")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(issued.cert, issued.key)
    async with RawServer(tls=context) as tls_server:
        tls_server.replies.append(ok(b"secret"))
        trusted = Endpoint(URL(tls_server.url), TlsSettings(ca_file=str(ca.files.cert)))
        response = await pool.request(trusted, "GET", "/", CIMultiDict(), None, connect_timeout=5, read_timeout=5)
        assert b"".join([chunk async for chunk in response.chunks()]) == b"secret"
        response.release()
        with pytest.raises(UpstreamConnectError) as err:  # the system's CAs do not know this one
            await pool.request(
                Endpoint(URL(tls_server.url)), "GET", "/", CIMultiDict(), None, connect_timeout=5, read_timeout=5
            )
    assert err.value.reason == "TLS handshake failed (CERTIFICATE_VERIFY_FAILED)"


def test_the_aiohttp_transport_is_made_without_a_loop() -> None:
    """Built with the app's runtime, before any loop runs: its session comes with the first request."""
    transport = AiohttpTransport(limit=4, idle_timeout=1.0)
    assert transport.connections() == {"open": 0, "idle": 0, "waiting": 0}


async def test_idle_connections_are_reaped_on_the_clock(server) -> None:
    """Native only: its reaper runs on the injected clock (aiohttp's connector reaps on the loop's own)."""
    clock = FakeClock()
    native = NativeTransport(limit=8, idle_timeout=30.0, clock=clock)
    try:
        for round_ in (1, 2):  # the reaper sleeps again once there is something idle again
            server.replies.append(ok())
            await fetch(native, server)
            assert native.connections() == {"open": 1, "idle": 1, "waiting": 0}
            await asyncio.wait_for(until(lambda: clock.sleepers == 1), 5)
            await clock.advance(29.5)
            assert native.connections()["idle"] == 1 and len(server.closed) == round_ - 1
            await clock.advance(1.0)
            assert native.connections() == {"open": 0, "idle": 0, "waiting": 0}
            await asyncio.wait_for(until(lambda n=round_: len(server.closed) == n), 5)
        assert server.closed == [1, 2] and server.connections == [1, 2]
    finally:
        await native.close()


async def _read_exactly(tunnel: Tunnel, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = await asyncio.wait_for(tunnel.read(), 5)
        assert chunk, f"the tunnel ended after {data!r}"
        data += chunk
    return data
