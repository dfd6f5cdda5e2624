"""ProxyHandler: one request, in named steps.

    refuse the method -> identify the client -> route -> admit (the route's concurrency limit)
    -> dispatch by protocol -> the credential flow (flow.py) -> stream back (responses.py)
    -> record (metrics, access log)

The request body is buffered only when it may have to be replayed (small, known length); the
response is never buffered. For the life of a request its id, route and client are in
`REQUEST_CONTEXT`, so every line logged meanwhile (the token engine's too) carries them.
"""

from __future__ import annotations

import asyncio

from aiohttp import web

from authproxy.clock import Clock
from authproxy.config.schema import Limits
from authproxy.errors import AuthProxyError, ClientTooSlow, MethodRefused, Overloaded
from authproxy.observability.access_log import access_logger
from authproxy.observability.logging import REQUEST_CONTEXT
from authproxy.observability.metrics import UNMATCHED, RouteStats, Stats
from authproxy.proxy.access import Client, Gatekeeper
from authproxy.proxy.bodies import request_body
from authproxy.proxy.exchange import Exchange
from authproxy.proxy.flow import may_resend, send_with_credential, upstream_headers
from authproxy.proxy.headers import request_id_from
from authproxy.proxy.recorder import RequestLog
from authproxy.proxy.responses import CUT_OFF, error_response, hang_up_after, stream_back
from authproxy.proxy.routing import Route, Router
from authproxy.proxy.websocket import is_websocket_upgrade, proxy_websocket
from authproxy.upstream.transport import Body

REFUSED_METHODS = frozenset(("CONNECT", "TRACE"))


class ProxyHandler:
    """The catch-all handler; `router`, `gate` and `limits` are replaced on reload."""

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
        self.recorder: RequestLog | None = None  # the console's request list and the trace (proxy/recorder.py)

    async def __call__(self, request: web.Request) -> web.StreamResponse:
        started = self.clock.monotonic()
        request_id = request_id_from(request.headers)
        exchange = Exchange(request_id)
        bound = REQUEST_CONTEXT.set(exchange)  # every line logged meanwhile names the request (observability.logging)
        stats: RouteStats | None = None
        try:
            if request.method in REFUSED_METHODS:
                refuse_method(request.method)
            client, key_in_authorization = self._identify(request) if self.gate.team else (None, False)
            if client is not None:
                exchange.client = client.name
            route, remainder, query = (  # 404, 400 for unsafe paths; in team mode only the client's routes
                self.router.match(request.raw_path) if client is None else self._route_for(request, client)
            )
            exchange.route = route.name
            stats = self.stats.route(route.name)
            if route.max_concurrent is not None and stats.in_flight >= route.max_concurrent:
                raise overloaded(route)
            stats.in_flight += 1  # admitted: counted in flight until it ends (per route, per client)
            if client is not None:
                client.in_flight += 1
            try:
                target = route.upstream_target(remainder, query)
                if is_websocket_upgrade(request):
                    return await proxy_websocket(
                        request, route, target, exchange, self.clock, self.limits.send_timeout, key_in_authorization
                    )
                return await self._forward(request, route, target, request_id, exchange, key_in_authorization)
            finally:
                stats.in_flight -= 1
                if client is not None:
                    client.in_flight -= 1
        except AuthProxyError as err:
            return await self._refuse(request, err, exchange)
        except asyncio.CancelledError:
            exchange.status = 499  # the client went away; its upstream request is cancelled with it
            raise
        finally:
            self._record(request, exchange, stats, started)
            REQUEST_CONTEXT.reset(bound)

    # -- the steps -------------------------------------------------------------------------------

    def _identify(self, request: web.Request) -> tuple[Client, bool]:
        """Team mode: the client whose key the request carries (401 without one), and whether it came
        in Authorization (then it is never forwarded, even on pass_client_auth routes)."""
        return self.gate.identify(request.headers)

    def _route_for(self, request: web.Request, client: Client) -> tuple[Route, str, str | None]:
        """Team mode: the route for the raw target among those the client may use, with its methods and rate."""
        route, remainder, query = self.router.match(request.raw_path, client.may_use)
        self.gate.authorize(client, route.name, request.method, request.headers, query)
        return route, remainder, query

    async def _forward(
        self,
        request: web.Request,
        route: Route,
        target: str,
        request_id: str,
        exchange: Exchange,
        key_in_authorization: bool,
    ) -> web.StreamResponse:
        """An HTTP request: headers, body, the credential flow, then the answer streamed back."""
        headers = upstream_headers(request, route, request_id, key_in_authorization, route.drop)
        method = request.method
        body: Body = None
        replayable = True
        if request.body_exists:
            resend = route.credential is not None and may_resend(route, method)
            body, replayable = await request_body(
                request, self.limits, replay_limit=route.config.retry_body_limit if resend else None
            )
        recorder = self.recorder
        if recorder is not None and recorder.capture_bytes:
            exchange.capture = bytearray()
            exchange.capture_limit = recorder.capture_bytes
            if isinstance(body, bytes):
                exchange.request_body = body[: recorder.capture_bytes]
        upstream = await send_with_credential(
            route, method, target, headers, body, exchange, self.clock, replayable=replayable
        )
        try:
            exchange.headers_at = self.clock.monotonic()
            exchange.status = upstream.status
            return await stream_back(
                request, upstream, route, request_id, exchange, self.clock, self.limits.send_timeout
            )
        finally:
            upstream.release()

    async def _refuse(self, request: web.Request, err: AuthProxyError, exchange: Exchange) -> web.StreamResponse:
        if err.route is None:
            err.route = exchange.route
        exchange.status = err.status
        exchange.error = err.code
        response = error_response(err, exchange.request_id)
        body = response.body
        exchange.bytes = len(body) if isinstance(body, bytes) and request.method != "HEAD" else 0  # what is sent
        if isinstance(err, ClientTooSlow):
            return await hang_up_after(request, response)
        return response

    def _record(self, request: web.Request, exchange: Exchange, stats: RouteStats | None, started: float) -> None:
        """The metrics and the access line of one request."""
        ended = self.clock.monotonic()
        upstream_s = overhead_s = None
        if exchange.sent_at is not None and exchange.headers_at is not None:
            upstream_s = exchange.headers_at - exchange.sent_at
            overhead_s = (exchange.sent_at - started) + ((exchange.prepared_at or ended) - exchange.headers_at)
        (stats or self.stats.route(UNMATCHED)).record(
            request.method,
            exchange.status,
            upstream_s=upstream_s,
            overhead_s=overhead_s if overhead_s is not None else ended - started,
            retried=exchange.retried,
            failed=exchange.error in CUT_OFF,  # with every 5xx; a 4xx refusal is the client's error, not ours
        )
        if self.recorder is not None:
            self.recorder.record(
                started, ended, request.method, request.raw_path, request.remote, request.headers, exchange
            )
        if self.access_log is not None:
            line = {
                "event": "request",
                "route": exchange.route,
                "method": request.method,
                "path": request.raw_path,
                "status": exchange.status,
                "bytes": exchange.bytes,
                "duration_ms": round((ended - started) * 1000, 2),
                "upstream_ms": None if upstream_s is None else round(upstream_s * 1000, 2),
                "request_id": exchange.request_id,
            }
            if exchange.client is not None:
                line["client"] = exchange.client
            if exchange.retried:
                line["retried"] = True
            if exchange.error:
                line["error"] = exchange.error
            self.access_log(line)


def overloaded(route: Route) -> Overloaded:
    return Overloaded(f"the route already has {route.max_concurrent} requests in flight; retry shortly", retry_after=1)


def refuse_method(method: str) -> None:
    if method in REFUSED_METHODS:  # CONNECT, TRACE
        raise MethodRefused(
            f"{method} is refused: CONNECT would make this an open proxy, and TRACE "
            "could echo the injected credentials back to the client"
        )
