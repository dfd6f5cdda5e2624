"""ProxyHandler: forward one request upstream with credentials injected, retry once on 401, stream back.

The request body is buffered only when it may have to be replayed (small, known length); the
response is never buffered.
"""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import structlog
from aiohttp import web
from multidict import CIMultiDict

from authproxy.clock import Clock
from authproxy.config.schema import Limits
from authproxy.errors import (
    AuthProxyError,
    ClientTooSlow,
    MethodRefused,
    Overloaded,
    UpstreamError,
    UpstreamTimeout,
    UpstreamUnreachable,
)
from authproxy.observability.access_log import access_logger
from authproxy.observability.metrics import UNMATCHED, Stats
from authproxy.proxy.access import Gatekeeper
from authproxy.proxy.bodies import LimitedBody, read_body, too_large
from authproxy.proxy.headers import (
    REQUEST_ID,
    request_id_from,
    response_headers,
    rewrite_location,
    upstream_request_headers,
)
from authproxy.proxy.responses import error_response, hang_up_after
from authproxy.proxy.routing import Route, Router
from authproxy.proxy.websocket import is_websocket_upgrade, proxy_websocket
from authproxy.upstream import (
    UnsafeHeaderError,
    UpstreamBrokenError,
    UpstreamConnectError,
    UpstreamPool,
    UpstreamResponse,
)

IDEMPOTENT = frozenset(("GET", "HEAD", "OPTIONS", "PUT", "DELETE"))
REFUSED_METHODS = frozenset(("CONNECT", "TRACE"))
NO_BODY_STATUS = frozenset((204, 304))

log = structlog.get_logger("authproxy.proxy")


class Exchange:
    """What happened to one request: for the access log and the metrics."""

    __slots__ = ("bytes", "error", "headers_at", "prepared_at", "retried", "sent_at", "status")

    def __init__(self) -> None:
        self.status = 0
        self.bytes = 0
        self.error: str | None = None
        self.retried = False
        self.sent_at: float | None = None  # first byte sent upstream
        self.headers_at: float | None = None  # final upstream response headers received
        self.prepared_at: float | None = None  # our response headers sent to the client


class ProxyHandler:
    """The catch-all handler; `router` and `session` are set by the app at startup (and on reload)."""

    def __init__(
        self, router: Router, clock: Clock, stats: Stats, gate: Gatekeeper, limits: Limits, *, access_log: bool = True
    ) -> None:
        self.router = router
        self.gate = gate
        self.limits = limits
        self.clock = clock
        self.stats = stats
        # Taken from the logging setup when the app is built; None when info lines are off.
        self.access_log = access_logger() if access_log else None
        self.session: aiohttp.ClientSession | None = None  # websockets
        self.upstream: UpstreamPool | None = None  # every other request

    async def __call__(self, request: web.Request) -> web.StreamResponse:
        clock = self.clock
        started = clock.monotonic()
        request_id = request_id_from(request.headers)
        route: Route | None = None
        exchange = Exchange()
        stats = None
        client = None
        counted = False
        try:
            if request.method in REFUSED_METHODS:
                raise MethodRefused(
                    f"{request.method} is refused: CONNECT would make this an open proxy, and TRACE "
                    "could echo the injected credentials back to the client"
                )
            gate = self.gate
            if gate.team:
                client, key_in_authorization = gate.identify(request.headers)
                route, remainder, query = self.router.match(request.raw_path, client.may_use)
                gate.authorize(client, route.name, request.method)
            else:
                key_in_authorization = False
                route, remainder, query = self.router.match(request.raw_path)
            stats = self.stats.route(route.name)
            if route.max_concurrent is not None and stats.in_flight >= route.max_concurrent:
                raise Overloaded(
                    f"the route already has {route.max_concurrent} requests in flight; retry shortly", retry_after=1
                )
            stats.in_flight += 1
            counted = True
            if is_websocket_upgrade(request):
                assert self.session is not None, "the app's startup creates the websocket session"
                url = route.upstream_url(remainder, query)
                return await proxy_websocket(
                    request, route, url, request_id, self.session, exchange, clock, key_in_authorization
                )
            target = route.upstream_target(remainder, query)
            return await self._forward(request, route, target, request_id, exchange, key_in_authorization)
        except AuthProxyError as err:
            if err.route is None and route is not None:
                err.route = route.name
            exchange.status = err.status
            exchange.error = err.code
            if isinstance(err, ClientTooSlow):
                return await hang_up_after(request, error_response(err, request_id))
            return error_response(err, request_id)
        except asyncio.CancelledError:
            exchange.status = 499  # the client went away; its upstream request is cancelled with it
            raise
        finally:
            ended = clock.monotonic()
            if stats is None:
                stats = self.stats.route(UNMATCHED)
            if counted:
                stats.in_flight -= 1
            upstream_s = overhead_s = None
            if exchange.sent_at is not None and exchange.headers_at is not None:
                upstream_s = exchange.headers_at - exchange.sent_at
                overhead_s = (exchange.sent_at - started) + ((exchange.prepared_at or ended) - exchange.headers_at)
            stats.record(
                request.method,
                exchange.status,
                upstream_s=upstream_s,
                overhead_s=overhead_s if overhead_s is not None else ended - started,
                retried=exchange.retried,
                failed=exchange.error is not None,
            )
            if self.access_log is not None:
                line = {
                    "event": "request",
                    "route": route.name if route else None,
                    "method": request.method,
                    "path": request.raw_path,
                    "status": exchange.status,
                    "bytes": exchange.bytes,
                    "duration_ms": round((ended - started) * 1000, 2),
                    "upstream_ms": None if upstream_s is None else round(upstream_s * 1000, 2),
                    "request_id": request_id,
                }
                if client is not None:
                    line["client"] = client.name
                if exchange.retried:
                    line["retried"] = True
                if exchange.error:
                    line["error"] = exchange.error
                self.access_log(line)

    async def _forward(
        self,
        request: web.Request,
        route: Route,
        target: str,
        request_id: str,
        exchange: Exchange,
        key_in_authorization: bool = False,
    ) -> web.StreamResponse:
        headers = upstream_request_headers(
            request.headers,
            route.drop,
            forwarded_for=request.remote,
            proto=request.scheme,
            host=request.host,
            request_id=request_id,
        )
        if key_in_authorization:  # the proxy key, even where the route passes the client's Authorization on
            headers.popall("Authorization", None)
        headers.update(route.inject)
        body, replayable = (await self._request_body(request, route)) if request.body_exists else (None, True)
        credential = route.credential
        token = None
        if credential is not None:
            token = await credential.current()
            headers.update(credential.headers(token))
        exchange.sent_at = self.clock.monotonic()
        upstream = await self._send(request.method, target, headers, body, route)
        try:
            if (
                credential is not None
                and token is not None
                and replayable
                and self._should_retry(upstream, route, request.method)
            ):
                fresh = await credential.refresh(stale=token)
                if fresh.access_token != token.access_token:  # a static token cannot be renewed: keep the 401
                    upstream.release()
                    exchange.retried = True
                    headers.update(credential.headers(fresh))
                    upstream = await self._send(request.method, target, headers, body, route)
                    if self._should_retry(upstream, route, request.method):
                        credential.rejected(fresh)  # no renewal per request while the upstream refuses
            exchange.headers_at = self.clock.monotonic()
            exchange.status = upstream.status
            return await self._stream_back(request, upstream, route, request_id, exchange)
        finally:
            upstream.release()

    async def _request_body(self, request: web.Request, route: Route) -> tuple[Any, bool]:
        """(body, replayable): small known-length bodies are read so a 401 can be retried."""
        if not request.body_exists:
            return None, True
        limits = self.limits
        length = request.content_length
        if length is not None and length > limits.max_body:
            raise too_large(limits.max_body)
        policy = route.config.retry_on_401
        if (
            route.credential is not None
            and length is not None
            and length <= route.config.retry_body_limit
            and (policy == "always" or (policy == "idempotent" and request.method in IDEMPOTENT))
        ):
            return await read_body(request.content, length, limits.client_timeout), True
        return LimitedBody(request.content, limits.max_body, limits.client_timeout), False

    def _should_retry(self, upstream: UpstreamResponse, route: Route, method: str) -> bool:
        return should_retry(upstream.status, upstream.headers.get("WWW-Authenticate", ""), route, method)

    async def _send(
        self, method: str, target: str, headers: CIMultiDict[str], body: Any, route: Route
    ) -> UpstreamResponse:
        assert self.upstream is not None, "the app's startup creates the upstream pool"
        config = route.config
        try:
            return await self.upstream.request(
                route.endpoint,
                method,
                target,
                headers,
                body,
                connect_timeout=config.connect_timeout,
                read_timeout=config.read_timeout,
            )
        except (TimeoutError, OSError, UnsafeHeaderError, AuthProxyError) as exc:
            if isinstance(body, LimitedBody) and body.error is not None:
                raise body.error from None  # the client's body broke a limit, not the upstream
            if isinstance(exc, AuthProxyError):
                raise
            raise upstream_failure(exc, route) from None

    async def _stream_back(
        self,
        request: web.Request,
        upstream: UpstreamResponse,
        route: Route,
        request_id: str,
        exchange: Exchange,
    ) -> web.StreamResponse:
        response = web.StreamResponse(status=upstream.status, reason=upstream.reason)
        headers = response_headers(upstream.headers, response.headers)  # straight into the response
        location = headers.get("Location")
        if location is not None:
            headers["Location"] = rewrite_location(
                location,
                origin=route.origin,
                base_path=route.base_path,
                prefix=route.match_prefix,
                proxy_origin=f"{request.scheme}://{request.host}",
            )
        headers[REQUEST_ID] = request_id
        await response.prepare(request)
        exchange.prepared_at = self.clock.monotonic()
        if request.method == "HEAD" or upstream.status in NO_BODY_STATUS:
            await response.write_eof()
            return response
        written = 0
        try:
            async for chunk in upstream.chunks():
                await response.write(chunk)
                written += len(chunk)
        except (UpstreamBrokenError, TimeoutError, AuthProxyError) as exc:
            # Headers are gone already: the only honest signal left is a broken connection,
            # never a clean but short body.
            exchange.bytes = written
            exchange.error = "upstream_broken_body"
            log.warning("upstream_broken_body", route=route.name, request_id=request_id, error=type(exc).__name__)
            if request.transport is not None:
                request.transport.abort()
            return response
        exchange.bytes = written
        await response.write_eof()
        return response


def should_retry(status: int, challenge: str, route: Route, method: str) -> bool:
    """Whether an upstream answer means "this token was refused" under the route's retry policy."""
    policy = route.config.retry_on_401
    if policy == "never" or (policy == "idempotent" and method not in IDEMPOTENT):
        return False
    if status == 401:
        return True
    if status == 403 and route.config.retry_on_invalid_token_403:
        return "invalid_token" in challenge and "insufficient_scope" not in challenge
    return False


def upstream_failure(exc: BaseException, route: Route) -> AuthProxyError:
    """The client-facing error for a failed upstream exchange (before any response was sent)."""
    if isinstance(exc, TimeoutError):
        return UpstreamTimeout(
            f"the upstream did not answer within the route's timeouts "
            f"(connect {route.config.connect_timeout:g} s, read {route.config.read_timeout:g} s)",
            route=route.name,
        )
    if isinstance(exc, UpstreamConnectError):
        return UpstreamUnreachable(f"cannot connect to the upstream {route.origin}: {exc.reason}", route=route.name)
    if isinstance(exc, aiohttp.ClientConnectorError):  # websockets (aiohttp's client)
        reason = exc.os_error.strerror or type(exc.os_error).__name__
        return UpstreamUnreachable(f"cannot connect to the upstream {route.origin}: {reason}", route=route.name)
    if isinstance(exc, UnsafeHeaderError):
        return UpstreamError(f"refused to send the request: {exc}", route=route.name)
    return UpstreamError(f"the upstream broke the exchange before answering ({type(exc).__name__})", route=route.name)
