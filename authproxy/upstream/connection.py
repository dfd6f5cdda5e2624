"""One upstream connection: request out, response parsed by llhttp, body streamed with flow control.

At most one exchange per connection at a time. A connection goes back to its owner (the pool)
only after its response was read to the end with keep-alive, and only after an answer whose end is
certain (limits.py); anything unexpected (a second answer, bytes while idle, a parse error, a head
past its limits) closes it. After a 101 to an upgrade request the connection stops parsing and
carries raw bytes for a `NativeTunnel` until either side closes. The parser's callbacks are in
parsing.py.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterable
from typing import Protocol

import httptools
from multidict import CIMultiDict

from authproxy.upstream.head import request_head
from authproxy.upstream.limits import HeadLimits
from authproxy.upstream.parsing import Parsing
from authproxy.upstream.response import NativeResponse, NativeTunnel
from authproxy.upstream.transport import (
    Body,
    BodySourceError,
    Endpoint,
    TransportError,
    UnsafeHeaderError,
    UpstreamBadResponseError,
    UpstreamBrokenError,
    UpstreamTimeoutError,
)

PARSER_STOPS = (httptools.HttpParserUpgrade, httptools.HttpParserError)  # the first is not a kind of the second


class StaleConnectionError(UpstreamBrokenError):
    """A reused connection was found closed before any response byte: safe to send again."""


class Owner(Protocol):
    """Where a connection returns when its exchange is over (the pool)."""

    def put_back(self, conn: Connection) -> None: ...

    def forget(self, conn: Connection) -> None: ...


class Connection(Parsing, asyncio.Protocol):
    """One keep-alive connection to an upstream; at most one exchange at a time."""

    def __init__(self, owner: Owner, endpoint: Endpoint, limits: HeadLimits) -> None:
        self.owner, self.endpoint = owner, endpoint
        self.loop = asyncio.get_running_loop()
        self.transport: asyncio.Transport | None = None
        self.used = 0  # exchanges started on this connection
        self.single_use = False  # a tunnel through the egress proxy for one websocket handshake: never pooled
        self.idle_since = 0.0  # the pool's clock, set when it goes back to the pool
        self._response: NativeResponse | None = None
        self._tunnel: NativeTunnel | None = None
        self._head: asyncio.Future[NativeResponse] | None = None
        self._parser = None
        self._set_limits(limits)
        self._received = False  # any byte of the current response
        self._read_timeout = 0.0
        self._last_read = 0.0
        self._timer: asyncio.TimerHandle | None = None
        self._reading_paused = False
        self._writing_paused = False
        self._drain: asyncio.Future[None] | None = None
        self._writer: asyncio.Task[None] | None = None

    # -- asyncio.Protocol ----------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        tunnel = self._tunnel
        if tunnel is not None:
            self._inbound(tunnel, data)
            return
        if self._upgraded:  # after the 101, before the tunnel starts: keep the bytes for it
            if self._response is not None:
                self._inbound(self._response, data)
            return
        if self._parser is None:  # bytes from an idle connection: not HTTP we can trust
            self._abort()
            return
        self._received = True
        self._last_read = self.loop.time()
        if self._heading:  # llhttp would buffer a head without end: its bytes are counted
            left = self._head_left - len(data)
            if left <= 0:
                self._past_head_limit(data)
                return
            self._head_left = left
        try:
            self._parser.feed_data(data)
        except PARSER_STOPS as exc:
            self._parse_error(exc, data)

    def _parse_error(self, exc: Exception, data: bytes | memoryview) -> None:
        """llhttp stopped: at a 101 (the rest of `data` is the new protocol's), at a limit, or at a broken answer."""
        if isinstance(exc, httptools.HttpParserUpgrade):
            offset = exc.args[0]
            if self._upgraded and self._response is not None:
                self._parser = None  # the rest is the new protocol's
                if len(data) > offset:
                    self._inbound(self._response, bytes(data[offset:]))
            else:
                self._fail(UpstreamBrokenError("the upstream switched protocols (101) for a plain request"))
            return
        refusal = exc.__context__  # what a callback raised (parsing.py): a limit crossed
        if isinstance(refusal, UpstreamBadResponseError):
            self._fail(refusal)
        else:
            self._fail(UpstreamBrokenError(f"the upstream's response is not usable HTTP/1.1 ({type(exc).__name__})"))

    def _past_head_limit(self, data: bytes) -> None:
        """This read reaches the heads' limit: parse up to it, and no further if the final head is not in by then."""
        cut = self._head_left
        self._head_left = 0
        piece = memoryview(data)[:cut] if cut < len(data) else data
        try:
            self._parser.feed_data(piece)
        except PARSER_STOPS as exc:
            self._parse_error(exc, piece)
        if self.transport is None:  # refused or broken on the way
            return
        if self._heading:
            self._fail(self.limits.head_too_large(self.endpoint))
        elif len(data) > cut:
            self.data_received(data[cut:])

    def eof_received(self) -> bool:
        return False  # close our side too

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        self.owner.forget(self)
        tunnel = self._tunnel
        if tunnel is not None:
            tunnel.done = True
            tunnel.wake()
        response = self._response
        if response is not None and not response.done and response.error is None:
            if response.status and response.until_close and exc is None:
                self.on_message_complete()  # a body delimited by the connection's end is complete
            elif not self._received and self.used > 1:
                self._fail(StaleConnectionError("the upstream closed the kept-alive connection"))
            else:
                self._fail(UpstreamBrokenError("the upstream closed the connection before the response was complete"))
        self._wake_drain(UpstreamBrokenError("the upstream closed the connection while the body was being sent"))

    def pause_writing(self) -> None:
        self._writing_paused = True

    def resume_writing(self) -> None:
        self._writing_paused = False
        self._wake_drain(None)

    # -- an exchange ---------------------------------------------------------------------------------

    async def exchange(
        self, method: str, target: str, headers: CIMultiDict[str], body: Body, read_timeout: float, upgrade: bool
    ) -> NativeResponse:
        """Send the request; return once the response's head is in (the body streams after)."""
        assert self.transport is not None
        try:
            head = request_head(method, target, headers, body, self.endpoint.host_header)
        except UnicodeEncodeError as exc:
            self.finished(reusable=True)
            raise UnsafeHeaderError(f"a header value for the upstream cannot be encoded ({exc.reason})") from None
        except BaseException:
            self.finished(reusable=True)
            raise
        self.used += 1
        self._response = NativeResponse(self)
        self._parser = httptools.HttpResponseParser(self)
        self._head = self.loop.create_future()
        self._raw, self._reason, self._received, self._interims = [], "", False, 0
        self._no_body, self._upgrade = method == "HEAD", upgrade
        self._heading, self._head_left = True, self.limits.max_head
        self._read_timeout = read_timeout
        if body is None or isinstance(body, bytes):
            self.transport.writelines((head, body) if body else (head,))
            self._start_timer()
        else:
            self.transport.write(head)
            self._writer = self.loop.create_task(self._send_body(body, "Content-Length" in headers))
        try:
            return await self._head
        except BaseException:
            self._abort()
            raise

    async def _send_body(self, body: AsyncIterable[bytes], sized: bool) -> None:
        """Stream a client's body upstream (chunked unless its length is known), then time the answer."""
        try:
            async for chunk in body:
                if self.transport is None:
                    return
                if not chunk:  # an empty chunk would end a chunked body early
                    continue
                self.transport.writelines((chunk,) if sized else (b"%x\r\n" % len(chunk), chunk, b"\r\n"))
                if self._writing_paused:
                    await self._drained(self._read_timeout)
            if self.transport is not None and not sized:
                self.transport.write(b"0\r\n\r\n")
        except TransportError as exc:
            self._fail(exc)
            return
        except (BodySourceError, OSError) as exc:  # the client's side of the body failed: the request is void
            why = f"the request body could not be read from the client ({type(exc).__name__})"
            self._fail(UpstreamBrokenError(why))
            return
        self._start_timer()

    async def _drained(self, timeout: float) -> None:
        self._drain = self.loop.create_future()
        try:
            async with asyncio.timeout(timeout):
                await self._drain
        except TimeoutError:
            raise UpstreamTimeoutError("the upstream stopped reading the request body") from None

    def _wake_drain(self, exc: BaseException | None) -> None:
        drain, self._drain = self._drain, None
        if drain is not None and not drain.done():
            if exc is None:
                drain.set_result(None)
            else:
                drain.set_exception(exc)

    # -- what the response and the tunnel use (response.Source) --------------------------------------

    def consumed(self) -> None:
        """The reader took the buffered bytes: read from the upstream again (the silence clock restarts)."""
        if self._reading_paused and self.transport is not None:
            self._reading_paused = False
            self._last_read = self.loop.time()
            self.transport.resume_reading()

    def finished(self, reusable: bool) -> None:
        """The exchange is over: back to the pool, or closed."""
        writer, self._writer = self._writer, None
        if writer is not None and not writer.done():
            writer.cancel()
            reusable = False
        self._response, self._head = None, None
        self._stop_timer()
        if self._tunnel is not None or self._upgraded:
            self._close()  # a tunnel ends with what was written still delivered
        elif reusable and self.transport is not None and not self.transport.is_closing():
            self.owner.put_back(self)
        else:
            self._abort()

    def start_tunnel(self, tunnel: NativeTunnel) -> None:
        """Raw bytes both ways from now on; what arrived with the 101 goes first."""
        response = self._response
        self._response, self._head, self._tunnel = None, None, tunnel
        self._stop_timer()
        if response is not None and response.queue:
            tunnel.put(response.take())
        if self.transport is None:
            tunnel.done = True

    def send(self, data: bytes) -> None:
        if self.transport is not None:
            self.transport.write(data)

    async def drained(self) -> None:
        if self._writing_paused and self.transport is not None:
            self._drain = self.loop.create_future()
            try:
                await self._drain
            except UpstreamBrokenError:
                return  # the tunnel's reader sees the close

    # -- failure and the read timeout ----------------------------------------------------------------

    def _fail(self, exc: BaseException) -> None:
        head = self._head
        if head is not None and not head.done():
            head.set_exception(exc)
        response = self._response
        if response is not None and response.error is None and not response.done:
            response.error = exc
            response.wake()
        self._abort()

    def _abort(self) -> None:
        self._stop_timer()
        writer, self._writer = self._writer, None
        if writer is not None and not writer.done() and writer is not asyncio.current_task():
            writer.cancel()
        self._parser, self._raw = None, []
        transport, self.transport = self.transport, None
        self.owner.forget(self)
        tunnel = self._tunnel
        if tunnel is not None:
            tunnel.done = True
            tunnel.wake()
        if transport is not None:
            transport.abort()

    def _close(self) -> None:
        transport, self.transport = self.transport, None
        self.owner.forget(self)
        if transport is not None:
            transport.close()

    def _start_timer(self) -> None:
        self._last_read = self.loop.time()
        if self._timer is None and self._response is not None and not self._response.done:
            self._timer = self.loop.call_at(self._last_read + self._read_timeout, self._check_silence)

    def _stop_timer(self) -> None:
        timer, self._timer = self._timer, None
        if timer is not None:
            timer.cancel()

    def _check_silence(self) -> None:
        """One timer per exchange, re-armed only when it fires (not on every read)."""
        self._timer = None
        response = self._response
        if response is None or response.done:
            return
        now = self.loop.time()
        if self._reading_paused:  # the client is slow, not the upstream
            self._last_read = now
        due = self._last_read + self._read_timeout
        if now < due:
            self._timer = self.loop.call_at(due, self._check_silence)
            return
        self._fail(UpstreamTimeoutError(f"the upstream sent nothing for {self._read_timeout:g} s"))
