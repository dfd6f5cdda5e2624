"""The proxy's own browser login: `GET /-/login/ROUTE` and its callback `/-/login/ROUTE/callback`.

For a sidecar or a team proxy, where no terminal is at hand: the first request redirects the
browser to the provider (PKCE, random state) and sets a short-lived cookie binding the flow to
that browser; the callback checks state and cookie, exchanges the code, saves the tokens to the
proxy's store and has the route's credential adopt them at once.

The redirect URI is `auth.redirect_uri` when it ends in `/-/login/ROUTE/callback` (register that
exact URL, e.g. behind a TLS ingress), else this proxy's own origin as the browser reached it.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass

import structlog
from aiohttp import web
from cachetools import TTLCache

from authproxy.clock import Clock
from authproxy.config.schema import RouteConfig
from authproxy.errors import AuthProxyError, RouteNotFound
from authproxy.login.device import check_device_route
from authproxy.login.device_routes import add_device_logins, device_page
from authproxy.login.flow import (
    LoginAttempt,
    LoginError,
    complete_login,
    new_attempt,
    read_callback,
    resolve_cached,
)
from authproxy.proxy.headers import request_id_from
from authproxy.proxy.responses import error_response
from authproxy.server.runtime import RUNTIME
from authproxy.upstream.egress import EgressPolicy

log = structlog.get_logger("authproxy.login")

LOGIN_PATH = "/-/login/{route}"
CALLBACK_SUFFIX = "/callback"
COOKIE = "authproxy_login"
PENDING_TTL = 600.0  # seconds a started login may take
MAX_PENDING = 64  # unauthenticated GETs must not grow memory without bound


@dataclass(frozen=True, slots=True)
class _Pending:
    attempt: LoginAttempt
    cookie_hash: bytes


class PendingLogins:
    """Logins started in a browser and not yet called back, by state: at most MAX_PENDING, each for
    PENDING_TTL seconds on the app's clock (the least recently started goes first when full)."""

    def __init__(self, clock: Clock) -> None:
        self._by_state: TTLCache[str, _Pending] = TTLCache(MAX_PENDING, PENDING_TTL, timer=clock.monotonic)

    def add(self, attempt: LoginAttempt, cookie: str) -> None:
        self._by_state[attempt.state] = _Pending(attempt, _hash(cookie))

    def take(self, state: str) -> _Pending | None:
        """The pending login for `state`, removed: a state is good for one callback only."""
        return self._by_state.pop(state, None)

    def __len__(self) -> int:
        self._by_state.expire()
        return len(self._by_state)


PENDING = web.AppKey("pending_logins", PendingLogins)


def callback_path(route: str) -> str:
    return LOGIN_PATH.format(route=route) + CALLBACK_SUFFIX


def add_login_routes(app: web.Application) -> None:
    """Register the login endpoints (idempotent); call before the app starts."""
    if PENDING in app:
        return
    app[PENDING] = PendingLogins(app[RUNTIME].clock)
    add_device_logins(app)

    def route_config(request: web.Request) -> RouteConfig:
        name = request.match_info["route"]
        routes = request.app[RUNTIME].config.routes  # the live config: a reload may add a route
        route = routes.get(name)
        if route is None:
            known = ", ".join(routes) or "(none)"
            raise RouteNotFound(f"no route {name!r} to log in; routes: {known}", route=name)
        return route

    async def start(request: web.Request) -> web.StreamResponse:
        request_id = request_id_from(request.headers)
        try:
            route = route_config(request)
            name = route.name
            configured = route.auth.redirect_uri
            own = callback_path(name)
            redirect_uri = configured if configured and configured.endswith(own) else str(request.url.origin()) + own
            runtime = request.app[RUNTIME]
            egress = EgressPolicy(runtime.config, route, runtime.environ)
            route = await resolve_cached(runtime.discovery, route, runtime.transports.for_tokens(route), egress)
            if route.auth.login == "device":
                check_device_route(route)
                return await device_page(request, route)
            attempt = new_attempt(route, redirect_uri)
        except AuthProxyError as err:
            return error_response(err, request_id)
        cookie = secrets.token_urlsafe(24)
        request.app[PENDING].add(attempt, cookie)
        log.info("login_started", route=name, via="proxy")
        response = web.Response(status=302, headers={"Location": attempt.url, "Cache-Control": "no-store"})
        response.set_cookie(
            COOKIE, cookie, max_age=int(PENDING_TTL), path=LOGIN_PATH.format(route=name), httponly=True, samesite="Lax"
        )
        return response

    async def finish(request: web.Request) -> web.StreamResponse:
        request_id = request_id_from(request.headers)
        name = request.match_info["route"]
        again = f"start again at /-/login/{name}"
        try:
            route = route_config(request)
            pending = request.app[PENDING].take(request.query.get("state", ""))
            if pending is None or pending.attempt.route != name:
                raise LoginError(
                    f"this login is unknown or expired (older than {PENDING_TTL / 60:g} minutes, already used, "
                    f"or the proxy restarted); {again}",
                    route=name,
                )
            if not hmac.compare_digest(pending.cookie_hash, _hash(request.cookies.get(COOKIE, ""))):
                raise LoginError(
                    f"this redirect did not come back to the browser that started the login; {again} in this browser",
                    route=name,
                )
            code = read_callback(request.query, pending.attempt)
            runtime = request.app[RUNTIME]
            transport = runtime.transports.for_tokens(route)
            egress = EgressPolicy(runtime.config, route, runtime.environ)
            route = await resolve_cached(runtime.discovery, route, transport, egress=egress)
            token = await complete_login(
                route,
                pending.attempt,
                code,
                transport=transport,
                store=runtime.store,
                clock=runtime.clock,
                egress=egress,
            )
        except LoginError as err:
            log.warning("login_failed", route=name, via="proxy", detail=err.message)
            return error_response(err, request_id)
        except AuthProxyError as err:
            return error_response(err, request_id)
        served = runtime.router.by_name.get(name)
        credential = served.credential if served is not None else None
        if credential is not None:
            try:
                await credential.refresh()  # no stale token: adopt the stored login, clear login_required
            except AuthProxyError as err:
                log.warning("login_not_adopted", route=name, detail=err.message)
        log.info("login_completed", route=name, via="proxy", has_refresh_token=bool(token.refresh_token))
        response = web.Response(
            text=f"Logged in: route {name}. authproxy has saved the tokens; you can close this tab.\n",
            headers={"Cache-Control": "no-store"},
        )
        response.del_cookie(COOKIE, path=LOGIN_PATH.format(route=name))
        return response

    app.router.add_get(LOGIN_PATH, start)
    app.router.add_get(LOGIN_PATH + CALLBACK_SUFFIX, finish)


def _hash(value: str) -> bytes:
    return hashlib.sha256(value.encode()).digest()
