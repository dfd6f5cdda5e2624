"""The `Transport` on aiohttp's client, for routes with `transport: aiohttp`: same contract, same errors.

aiohttp does the connecting, pooling, TLS and parsing; this adapter makes it behave like the native
client: nothing added to the head but `Host` and the body's framing, no redirect followed, no
decompression, no cookies, aiohttp's own resend switched off (it resends on any dropped connection;
the native rule is narrower, see `request`), every aiohttp error turned into a `TransportError`
(aiohttp_errors.py), and after a 101 the connection taken over as a raw byte `Tunnel` (as aiohttp's
`ws_connect` does). The native client's rules on heads, reuse and rest (limits.py) are applied to
aiohttp's connections by aiohttp_pool.py.

An endpoint's own `limit` is a semaphore here: at most that many exchanges with the endpoint at a time,
so at most that many connections busy for it. aiohttp pools idle connections per host and port for the
whole session (two endpoints with the same origin share them), so idle ones are not counted against it;
they count against the transport's `limit` like any other.
"""

from __future__ import annotations

import asyncio
import inspect
import re
import ssl
from collections.abc import AsyncIterable, AsyncIterator
from types import SimpleNamespace

import aiohttp
from multidict import CIMultiDict
from yarl import URL

from authproxy.clock import Clock, SystemClock
from authproxy.upstream.aiohttp_errors import egress_failure, mapped, proxy_headers, refusal, stale
from authproxy.upstream.aiohttp_pool import EndpointGate, RestingConnector
from authproxy.upstream.aiohttp_tunnel import AiohttpTunnel, Feed
from authproxy.upstream.egress_dial import proxy_refusal
from authproxy.upstream.limits import MAX_HEAD, MAX_HEADERS, MAX_INTERIM, REST, HeadLimits
from authproxy.upstream.transport import (
    IDEMPOTENT_METHODS,
    Body,
    BodySourceError,
    Endpoint,
    UnsafeHeaderError,
    UpstreamBrokenError,
    UpstreamConnectError,
    UpstreamTimeoutError,
)

READ_BUFSIZE = 256 * 1024  # aiohttp pauses reading past twice this: the native HIGH_WATER (512 KiB)
# aiohttp's parser bounds each line (8 KiB by default: big cookies would fail); one as long as a whole head is allowed,
# the head itself is bounded by aiohttp_pool.LimitedHandler. Its own header count only since aiohttp 3.12 or so.
TAKES_MAX_HEADERS = "max_headers" in inspect.signature(aiohttp.ClientSession).parameters
SKIP_AUTO_HEADERS = ("Accept", "Accept-Encoding", "User-Agent", "Content-Type")  # send only what the caller gave
FORBIDDEN = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")  # what aiohttp's writer refuses (after taking a connection)
NO_CONNECTIONS = {"open": 0, "idle": 0, "waiting": 0}


class _Request(aiohttp.ClientRequest):
    """aiohttp gives a bodiless DELETE (or CONNECT) `Content-Length: 0`; the native client adds it only where a
    body is due (POST, PUT, PATCH, ...)."""

    GET_METHODS = aiohttp.ClientRequest.GET_METHODS | {"DELETE", "CONNECT"}


class _Attempt:
    """One send: whether aiohttp reused a kept-alive connection for it, and how its streamed body fared."""

    __slots__ = ("body_error", "read_timeout", "reused", "stall")

    def __init__(self, read_timeout: float) -> None:
        self.reused = False
        self.read_timeout = read_timeout
        self.body_error: BaseException | None = None
        self.stall: asyncio.Timeout | None = None  # armed while aiohttp writes a piece, until the head is in

    async def guard(self, body: AsyncIterable[bytes]) -> AsyncIterator[bytes]:
        """The caller's body, with the native client's two rules aiohttp lacks: a source's failure is remembered
        (it becomes `UpstreamBrokenError`), and an upstream that stops reading it times out (aiohttp would wait)."""
        loop = asyncio.get_running_loop()
        try:
            async for chunk in body:
                if chunk:  # an empty chunk would end a chunked body early
                    self._arm(loop.time() + self.read_timeout)
                    yield chunk  # back here once aiohttp has written it (and drained, when the upstream lags)
                    self._arm(None)
        except (BodySourceError, OSError) as exc:
            self.body_error = exc
            raise

    def _arm(self, when: float | None) -> None:
        stall = self.stall
        if stall is not None and not stall.expired():
            stall.reschedule(when)


async def _on_reuse(session: aiohttp.ClientSession, ctx: SimpleNamespace, params: object) -> None:
    ctx.trace_request_ctx.reused = True


class AiohttpTransport:
    """aiohttp's `ClientSession` behind the `Transport` interface; the session is made on first use (in the loop).

    `rest`, `max_head`, `max_headers`, `max_interim` as the native transport's (limits.py); `clock` times the rest.
    """

    def __init__(
        self,
        limit: int = 512,
        idle_timeout: float = 60.0,
        *,
        rest: float = REST,
        max_head: int = MAX_HEAD,
        max_headers: int = MAX_HEADERS,
        max_interim: int = MAX_INTERIM,
        clock: Clock | None = None,
    ) -> None:
        self.limit, self.idle_timeout, self.rest = limit, idle_timeout, rest
        self.head_limits = HeadLimits(max_head, max_headers, max_interim)
        self._clock = clock or SystemClock()
        self._session: aiohttp.ClientSession | None = None
        self._gates: dict[Endpoint, EndpointGate] = {}
        self._closed = False

    def _open_session(self) -> aiohttp.ClientSession:
        if self._closed:
            raise UpstreamConnectError("the proxy is shutting down")
        if self._session is None:
            connector = RestingConnector(
                limits=self.head_limits,
                rest=self.rest,
                clock=self._clock,
                limit=self.limit,
                limit_per_host=0,
                keepalive_timeout=self.idle_timeout,
                enable_cleanup_closed=True,
            )
            more = {"max_headers": self.head_limits.max_headers} if TAKES_MAX_HEADERS else {}
            trace = aiohttp.TraceConfig()
            trace.on_connection_reuseconn.append(_on_reuse)
            self._session = aiohttp.ClientSession(
                connector=connector,
                auto_decompress=False,
                skip_auto_headers=SKIP_AUTO_HEADERS,
                cookie_jar=aiohttp.DummyCookieJar(),
                trust_env=False,
                read_bufsize=READ_BUFSIZE,
                max_line_size=self.head_limits.max_head,
                max_field_size=self.head_limits.max_head,
                request_class=_Request,
                trace_configs=[trace],
                timeout=aiohttp.ClientTimeout(total=None),
                **more,
            )
            # Private, as aiohttp's own test client does: aiohttp would resend an idempotent request after any
            # dropped connection, even a new one; `request` resends only after a stale kept-alive one.
            self._session._retry_connection = False
        return self._session

    async def request(
        self,
        endpoint: Endpoint,
        method: str,
        target: str,
        headers: CIMultiDict[str],
        body: Body,
        *,
        connect_timeout: float,
        read_timeout: float,
        upgrade: bool = False,
    ) -> AiohttpResponse:
        """Send one request; its response's head (release() it when done with the body)."""
        sent = _outgoing(method, target, headers, body, endpoint.host_header)  # refused here: nothing was sent
        session = self._open_session()
        gate: EndpointGate | None = None
        if endpoint.limit is not None:
            gate = self._gates.get(endpoint) or self._gates.setdefault(endpoint, EndpointGate(endpoint.limit))
            await gate.enter(endpoint, connect_timeout)
        try:
            resp = await self._send(
                session, endpoint, method, target, sent, body, connect_timeout, read_timeout, upgrade
            )
            if endpoint.egress is not None and endpoint.tls is None and not upgrade:
                proxy_refusal(endpoint, resp)  # absolute form: a 407 is the proxy's
            if resp.status == 101 and not upgrade:
                resp.close()  # switching protocols unasked: nothing to trust after it
                raise UpstreamBrokenError("the upstream switched protocols (101) for a plain request")
            if resp.status == 101 and resp.connection is None:  # aiohttp did not switch: no (usable) `Upgrade`
                resp.close()
                raise UpstreamBrokenError("the upstream's 101 names no protocol to switch to")
        except BaseException:
            if gate is not None:
                gate.free.release()
            raise
        return AiohttpResponse(resp, read_timeout, gate)

    async def _send(
        self,
        session: aiohttp.ClientSession,
        endpoint: Endpoint,
        method: str,
        target: str,
        sent: CIMultiDict[str],
        body: Body,
        connect_timeout: float,
        read_timeout: float,
        upgrade: bool = False,
    ) -> aiohttp.ClientResponse:
        """The exchange through aiohttp, up to the final head; every failure as a `TransportError`."""
        url = URL(endpoint.origin + target, encoded=True)  # the target goes byte for byte
        context: ssl.SSLContext | bool = endpoint.tls.context() if endpoint.tls is not None else False
        timeout = aiohttp.ClientTimeout(
            total=None, connect=connect_timeout, sock_connect=connect_timeout, sock_read=read_timeout
        )
        egress = endpoint.egress  # aiohttp's own proxy support: absolute form for http, CONNECT for https
        via = (
            {"proxy": egress.url, "proxy_headers": proxy_headers(egress, tunnel=upgrade and endpoint.tls is None)}
            if egress
            else {}
        )
        if egress is not None and egress.authorization is not None and endpoint.tls is None and not upgrade:
            sent["Proxy-Authorization"] = egress.authorization  # absolute form: aiohttp would add only proxy_auth
        connector = session.connector
        if isinstance(connector, RestingConnector):
            connector.make_room()
        # Sent again after a stale close only when that cannot do anything twice: the upstream may have
        # acted on a POST before the connection dropped.
        replayable = (body is None or isinstance(body, bytes)) and method in IDEMPOTENT_METHODS
        while True:
            attempt = _Attempt(read_timeout)
            data = body if body is None or isinstance(body, bytes) else attempt.guard(body)
            try:
                async with asyncio.timeout(None) as stall:
                    attempt.stall = stall
                    resp = await session.request(
                        method,
                        url,
                        headers=sent,
                        data=data,
                        allow_redirects=False,
                        ssl=context,
                        timeout=timeout,
                        trace_request_ctx=attempt,
                        **via,
                    )
            except (TimeoutError, aiohttp.ClientError, OSError, ValueError) as exc:
                if attempt.body_error is not None:  # the client's side of the body failed: the request is void
                    why = f"the request body could not be read from the client ({type(attempt.body_error).__name__})"
                    raise UpstreamBrokenError(why) from None
                if stall.expired():
                    raise UpstreamTimeoutError("the upstream stopped reading the request body") from None
                if egress is not None and (failed := egress_failure(exc, endpoint)) is not None:
                    raise failed from None
                if (refused := refusal(exc, self.head_limits, endpoint)) is not None:
                    raise refused from None
                if attempt.reused and stale(exc):
                    if replayable:
                        continue
                    raise UpstreamBrokenError("the upstream closed the kept-alive connection") from None
                raise mapped(exc, connect_timeout, read_timeout) from None
            finally:
                attempt.stall = None  # the head is in (or it failed): the response's sock_read times the rest
            return resp

    def connections(self) -> dict[str, int]:
        connector = self._session.connector if self._session is not None else None
        gated = sum(gate.waiting for gate in self._gates.values())
        if connector is None:
            return {**NO_CONNECTIONS, "waiting": gated}
        # aiohttp has no public counts; these three private attributes are read here only.
        # _acquired: connections in use (and ones being made, and resting ones); _conns: idle ones per key;
        # _waiters: per key.
        idle = sum(1 for conns in connector._conns.values() for proto, _ in conns if proto.is_connected())
        resting = connector.resting if isinstance(connector, RestingConnector) else 0
        waiting = sum(len(waiters) for waiters in connector._waiters.values()) + gated
        return {"open": len(connector._acquired) + idle, "idle": idle + resting, "waiting": waiting}

    async def close(self) -> None:
        """Close every connection (at shutdown, after in-flight requests finished)."""
        self._closed = True
        session, self._session = self._session, None
        if session is not None:
            await session.close()


class AiohttpResponse:
    """Status and headers at once; the body as it arrives, through `chunks()`; then `release()`."""

    __slots__ = ("_gate", "_read_timeout", "_released", "_resp", "_taken", "headers", "reason", "status")

    def __init__(self, resp: aiohttp.ClientResponse, read_timeout: float, gate: EndpointGate | None = None) -> None:
        self._resp = resp
        self._gate = gate  # its endpoint's, held until release() (or the tunnel's close)
        self._read_timeout = read_timeout
        self._released = False
        self._taken = 0
        self.status = resp.status
        self.reason = resp.reason or ""
        self.headers: CIMultiDict[str] = CIMultiDict(resp.headers)

    @property
    def buffered(self) -> int:
        return self._resp.content.total_bytes - self._taken

    async def chunks(self) -> AsyncIterator[bytes]:
        """The body, in the pieces that are buffered when asked for."""
        content = self._resp.content
        while True:
            try:
                data = await content.readany()
            except (TimeoutError, aiohttp.ClientError, OSError) as exc:
                raise mapped(exc, 0.0, self._read_timeout) from None
            if not data:
                return
            self._taken += len(data)
            yield data

    def release(self) -> None:
        """Kept alive only when the body was read to its end (aiohttp then pools it); else closed."""
        if self._released:
            return
        self._released = True
        content = self._resp.content
        if content.at_eof() and content.exception() is None:
            self._resp.release()
        else:
            self._resp.close()
        gate, self._gate = self._gate, None
        if gate is not None:
            gate.free.release()

    def tunnel(self) -> AiohttpTunnel:
        """The connection after the 101, as a byte stream; this response no longer owns it."""
        connection = self._resp.connection
        if self.status != 101 or self._released or connection is None or connection.protocol is None:
            raise RuntimeError("tunnel() needs a 101 answer to an upgrade request, not yet released")
        self._released = True
        protocol = connection.protocol
        protocol.read_timeout = None  # a tunnel may be quiet for as long as its peers like (as the native one)
        inbox = aiohttp.StreamReader(protocol, READ_BUFSIZE, loop=asyncio.get_running_loop())
        # As `ws_connect` does with its WebSocketReader: bytes after the 101 head (held by aiohttp) come first.
        protocol.set_parser(Feed(inbox), inbox)
        if protocol.transport is None:  # gone before we took it: what arrived is all there is
            inbox.feed_eof()
        gate, self._gate = self._gate, None
        return AiohttpTunnel(self._resp, protocol, inbox, gate)


def _outgoing(method: str, target: str, headers: CIMultiDict[str], body: Body, host: str) -> CIMultiDict[str]:
    """The head's headers as the native client frames them; UnsafeHeaderError for what cannot go out as given."""
    if FORBIDDEN.search(target) or not _encodable(target):
        raise UnsafeHeaderError("the request target for the upstream holds a control character or cannot be encoded")
    for name, value in headers.items():
        if "\n" in name or "\r" in name:  # would end the header early: request smuggling
            raise UnsafeHeaderError("a header name for the upstream contains a line break")
        if "\n" in value or "\r" in value:
            raise UnsafeHeaderError(f"the value of header {name!r} for the upstream contains a line break")
        if FORBIDDEN.search(value) or FORBIDDEN.search(name):
            raise UnsafeHeaderError(f"header {name!r} for the upstream contains a control character")
        if not _encodable(value) or not _encodable(name):  # aiohttp's writer would silently drop the surrogates
            raise UnsafeHeaderError(f"a header value for the upstream cannot be encoded (header {name!r})")
    sent = CIMultiDict(headers)
    if "Host" not in sent:
        sent["Host"] = host
    if isinstance(body, bytes):
        sent["Content-Length"] = str(len(body))
    elif body is not None and "Content-Length" not in sent:
        sent.popall("Transfer-Encoding", None)  # aiohttp frames it `chunked` (and refuses to if it is given)
    return sent  # a None body's `Content-Length: 0` and a stream's chunked framing are aiohttp's (same rules)


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True
