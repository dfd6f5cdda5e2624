"""The credential flow, one for HTTP and WebSocket: inject, send, renew once on a refusal, resend once.

Modelled on httpx's `Auth.auth_flow`, where a retry is one more yield: here it is one more turn of
one loop, for a plain request and for a websocket handshake (`upgrade`) alike.
A 401 (and, when the route says so, a 403 with `error="invalid_token"`) renews the token once and
resends once, only when the body can be sent again. Redirects are never followed: a 3xx goes back
to the client like any other answer, so the route's headers never reach another host.
"""

from __future__ import annotations

from aiohttp import web
from multidict import CIMultiDict

from authproxy.clock import Clock
from authproxy.errors import (
    AuthProxyError,
    EgressProxyRefused,
    EgressProxyUnreachable,
    UpstreamBadResponse,
    UpstreamError,
    UpstreamTimeout,
    UpstreamUnreachable,
)
from authproxy.proxy.bodies import LimitedBody
from authproxy.proxy.exchange import Exchange
from authproxy.proxy.headers import upstream_request_headers
from authproxy.proxy.routing import Route
from authproxy.upstream.transport import (
    Body,
    EgressProxyError,
    TransportError,
    UnsafeHeaderError,
    UpstreamBadResponseError,
    UpstreamConnectError,
    UpstreamResponse,
    UpstreamTimeoutError,
)

IDEMPOTENT = frozenset(("GET", "HEAD", "OPTIONS", "PUT", "DELETE"))
REFUSALS = frozenset((401, 403))  # the answers that may mean "this token was refused"


def may_resend(route: Route, method: str) -> bool:
    """Whether the route's `retry_on_401` policy allows resending this method at all."""
    policy = route.config.retry_on_401
    return policy == "always" or (policy == "idempotent" and method in IDEMPOTENT)


def refused(route: Route, status: int, challenge: str, method: str) -> bool:
    """Whether an upstream answer means "this token was refused" under the route's retry policy."""
    if status == 401:
        return may_resend(route, method)
    if status == 403 and route.config.retry_on_invalid_token_403 and may_resend(route, method):
        return "invalid_token" in challenge and "insufficient_scope" not in challenge
    return False


async def send_with_credential(
    route: Route,
    method: str,
    target: str,
    headers: CIMultiDict[str],
    body: Body,
    exchange: Exchange,
    clock: Clock,
    *,
    replayable: bool,
    upgrade: bool = False,
) -> UpstreamResponse:
    """Send through the route's transport with its credential injected; on a refusal renew it once and
    resend once (a retry is one more turn of the loop). `upgrade`: a websocket handshake."""
    credential = route.credential
    token = None
    if credential is not None:
        token = credential.cached() or await credential.current()
        headers.update(credential.headers(token))
    config = route.config
    for resend in (False, True):
        if exchange.sent_at is None:
            exchange.sent_at = clock.monotonic()
        try:
            response = await route.transport.request(
                route.endpoint,
                method,
                target,
                headers,
                body,
                connect_timeout=config.connect_timeout,
                read_timeout=config.read_timeout,
                upgrade=upgrade,
            )
        except TransportError as exc:
            if isinstance(body, LimitedBody) and body.error is not None:
                raise body.error from None  # the client's body broke a limit, not the upstream
            raise upstream_failure(exc, route) from None
        exchange.sent_head = (target, headers)  # a reference: the recorder redacts it only when shown
        exchange.response_head = response.headers
        if credential is None or token is None or not replayable or response.status not in REFUSALS:
            return response
        if not refused(route, response.status, response.headers.get("WWW-Authenticate", ""), method):
            return response
        if resend:
            credential.rejected(token)  # no renewal per request while the upstream refuses even fresh tokens
            return response
        try:
            fresh = await credential.refresh(stale=token)
        except BaseException:
            response.release()
            raise
        if fresh.access_token == token.access_token:  # a static token cannot be renewed: the client gets the refusal
            return response
        response.release()
        exchange.retried = True
        token = fresh
        headers.update(credential.headers(fresh))
    raise AssertionError("unreachable: the second turn always returns")


def upstream_headers(
    request: web.Request, route: Route, request_id: str, key_in_authorization: bool, drop: frozenset[str]
) -> CIMultiDict[str]:
    """The head the upstream gets: the client's headers minus `drop`, X-Forwarded-*, the route's injected
    headers; never the proxy key (even where the route passes the client's Authorization on)."""
    headers = upstream_request_headers(
        request.headers,
        drop,
        forwarded_for=request.remote,
        proto=request.scheme,
        host=request.host,
        request_id=request_id,
    )
    if key_in_authorization:
        headers.popall("Authorization", None)
    headers.update(route.inject)
    return headers


def upstream_failure(exc: TransportError, route: Route) -> AuthProxyError:
    """The client-facing error for a failed upstream exchange (before any response was sent)."""
    if isinstance(exc, UpstreamTimeoutError):
        return UpstreamTimeout(
            f"the upstream did not answer within the route's timeouts "
            f"(connect {route.config.connect_timeout:g} s, read {route.config.read_timeout:g} s)",
            route=route.name,
        )
    if isinstance(exc, EgressProxyError):
        kind = EgressProxyRefused if exc.code == "egress_proxy_refused" else EgressProxyUnreachable
        return kind(exc.reason, route=route.name)
    if isinstance(exc, UpstreamConnectError):
        return UpstreamUnreachable(f"cannot connect to the upstream {route.origin}: {exc.reason}", route=route.name)
    if isinstance(exc, UnsafeHeaderError):
        return UpstreamError(f"refused to send the request: {exc}", route=route.name)
    if isinstance(exc, UpstreamBadResponseError):
        return UpstreamBadResponse(f"refused the upstream's answer: {exc}", route=route.name)
    return UpstreamError(f"the upstream broke the exchange before answering ({type(exc).__name__})", route=route.name)
