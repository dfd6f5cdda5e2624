"""How the native client reads an answer: llhttp's callbacks (through httptools), the head's limits, and whether
the connection may carry another exchange afterwards (the rules are in limits.py).

A `Connection` is a `Parsing`: these callbacks and the socket side (connection.py) share the state of the one
exchange in flight. A callback that finds a limit crossed raises its `UpstreamBadResponseError`, which stops llhttp
at once (httptools re-raises it as the context of an `HttpParserCallbackError`, see `Connection._parse_error`).
"""

from __future__ import annotations

import asyncio
from typing import Any

from multidict import CIMultiDict

from authproxy.upstream.limits import NO_REUSE_AFTER, HeadLimits
from authproxy.upstream.response import HIGH_WATER, Inbox, NativeResponse
from authproxy.upstream.transport import Endpoint, UpstreamBrokenError


class Parsing:
    """The httptools callbacks of a connection: the answer's head within its limits, its body pieces, its end."""

    endpoint: Endpoint
    transport: asyncio.Transport | None
    _response: NativeResponse | None
    _head: asyncio.Future[NativeResponse] | None
    _parser: Any  # httptools.HttpResponseParser while an answer is due, else None (a byte then is not trusted)
    _reading_paused: bool

    def _set_limits(self, limits: HeadLimits) -> None:
        self.limits = limits  # few attributes: CPython 3.11 keeps at most 30 in an instance's fast inline table
        self._raw: list[tuple[str, str]] = []
        self._reason = ""
        self._no_body = False  # the request was HEAD: the answer has no body, whatever its head says
        self._upgrade = False  # the request asked to switch protocols: a 101 is its answer
        self._upgraded = False  # and the 101 came: raw bytes from here on
        self._interims = 0  # 1xx answers so far in this exchange
        self._heading = False  # the final head is not in yet (an interim one may be): its bytes are counted
        self._head_left = 0  # bytes the heads of this answer may still take

    def _fail(self, exc: BaseException) -> None:
        raise NotImplementedError

    def _abort(self) -> None:
        raise NotImplementedError

    def _stop_timer(self) -> None:
        raise NotImplementedError

    # -- httptools callbacks -------------------------------------------------------------------------

    def on_message_begin(self) -> None:
        response = self._response
        if response is None or response.done:  # a second answer to one request: cannot be trusted
            self._abort()

    def on_status(self, reason: bytes) -> None:
        self._reason = reason.decode("latin-1")

    def on_header(self, name: bytes, value: bytes) -> None:
        raw = self._raw
        raw.append((name.decode("latin-1"), value.decode("utf-8", "surrogateescape")))
        if len(raw) > self.limits.max_headers:
            raise self.limits.too_many_headers(self.endpoint)

    def on_headers_complete(self) -> None:
        parser = self._parser
        status = parser.get_status_code()
        if status == 101 and not self._upgrade:  # switching protocols for a request that asked for none
            self._fail(UpstreamBrokenError("the upstream switched protocols (101) for a plain request"))
            return
        if status < 200 and status != 101:  # 100 Continue, 103 Early Hints: interim, the real answer follows
            self._interims += 1
            if self._interims > self.limits.max_interim:
                raise self.limits.too_many_interim(self.endpoint)
            self._raw = []
            return
        self._heading = False
        response = self._response
        if response is None or response.done:
            return
        headers = response.headers = CIMultiDict(self._raw)
        self._raw = []
        response.status, response.reason = status, self._reason
        response.upgraded = self._upgraded = status == 101
        codings = ",".join(headers.getall("Transfer-Encoding", ())).lower().split(",")
        chunked = codings[-1].strip() == "chunked"  # as llhttp reads it: only a final `chunked` frames the body
        response.until_close = until_close = not chunked and ("Content-Length" not in headers or codings != [""])
        # Used again only after an answer whose end is certain (limits.py): after a HEAD, a 204 or a 304 a body
        # sent anyway, after a 1xx or a body ended by the close anything, would be read as the next answer.
        response.keep_alive = (
            status not in NO_REUSE_AFTER  # 101 too: a tunnel, not a pooled connection
            and not until_close
            and not (self._no_body or self._interims)
            and parser.should_keep_alive()
        )
        head = self._head
        if head is not None and not head.done():
            head.set_result(response)
        if self._no_body or status in (101, 204, 304):
            self.on_message_complete()

    def on_body(self, body: bytes) -> None:
        response = self._response
        if response is not None and not response.done:  # inline: once per body piece of every response
            response.queue.append(body)
            response.buffered += len(body)
            if response.buffered > HIGH_WATER and not self._reading_paused and self.transport is not None:
                self._reading_paused = True
                self.transport.pause_reading()
            response.wake()

    def on_message_complete(self) -> None:
        if self._heading:  # an interim answer's end: the final one follows
            return
        response = self._response
        if response is None or response.done:
            return
        response.done = True
        if not response.upgraded:
            self._parser = None  # anything more before the next request is a protocol error
        self._stop_timer()
        response.wake()

    def _inbound(self, inbox: Inbox, data: bytes) -> None:
        inbox.put(data)
        if inbox.buffered > HIGH_WATER and not self._reading_paused and self.transport is not None:
            self._reading_paused = True
            self.transport.pause_reading()
