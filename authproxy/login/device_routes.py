"""`/-/login/ROUTE` for a route with `auth.login: device`: the proxy runs the RFC 8628 device login.

The page shows the verification link and the user code and reloads itself every few seconds; the
proxy polls the token endpoint in the background, saves the tokens to its store and has the route's
credential adopt them. The page never holds a token or the device code. At most one device login
per route is in flight: reloading the page shows the same code; once it has ended, the next visit
shows the outcome once, and the visit after starts anew.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from html import escape

import structlog
from aiohttp import web

from authproxy.config.schema import RouteConfig
from authproxy.errors import AuthProxyError
from authproxy.login.device import DeviceCode, poll_for_token, request_device_code
from authproxy.login.flow import LoginError, save_login
from authproxy.server.runtime import RUNTIME
from authproxy.upstream.egress import EgressPolicy

log = structlog.get_logger("authproxy.login")

REFRESH_SECONDS = 5
HEADERS = {
    "Cache-Control": "no-store",
    "Content-Security-Policy": "default-src 'none'",
    "Referrer-Policy": "no-referrer",
}


@dataclass
class DeviceLogin:
    code: DeviceCode
    task: asyncio.Task[None] | None = None
    outcome: str | None = None  # None while pending; then "ok" or what went wrong


class DeviceLogins:
    """The device logins the proxy is polling for, one per route; cancelled at shutdown."""

    def __init__(self) -> None:
        self.by_route: dict[str, DeviceLogin] = {}

    async def close(self) -> None:
        for login in self.by_route.values():
            if login.task is not None:
                login.task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await login.task
        self.by_route.clear()


DEVICE_LOGINS = web.AppKey("device_logins", DeviceLogins)


def add_device_logins(app: web.Application) -> None:
    app[DEVICE_LOGINS] = DeviceLogins()

    async def stop(app: web.Application) -> None:
        await app[DEVICE_LOGINS].close()

    app.on_shutdown.append(stop)


async def device_page(request: web.Request, route: RouteConfig) -> web.Response:
    """Start (or show) the route's device login; `route` has its discovered endpoints."""
    logins, runtime = request.app[DEVICE_LOGINS], request.app[RUNTIME]
    current = logins.by_route.get(route.name)
    if current is not None and current.outcome is not None:
        del logins.by_route[route.name]  # shown once; the next visit starts anew
        return _outcome_page(route.name, current.outcome)
    if current is None or runtime.clock.monotonic() >= current.code.expires_at:
        transport = runtime.transports.for_tokens(route)
        egress = EgressPolicy(runtime.config, route, runtime.environ)
        code = await request_device_code(route, transport=transport, clock=runtime.clock, egress=egress)
        current = logins.by_route[route.name] = DeviceLogin(code)
        current.task = asyncio.get_running_loop().create_task(
            _poll(request.app, route, current), name=f"device-login:{route.name}"
        )
        log.info("login_started", route=route.name, via="proxy", flow="device")
    return _pending_page(route.name, current.code)


async def _poll(app: web.Application, route: RouteConfig, login: DeviceLogin) -> None:
    runtime = app[RUNTIME]
    try:
        token = await poll_for_token(
            route,
            login.code,
            transport=runtime.transports.for_tokens(route),
            clock=runtime.clock,
            egress=EgressPolicy(runtime.config, route, runtime.environ),
        )
        await save_login(route, token, runtime.store)
    except LoginError as err:
        log.warning("login_failed", route=route.name, via="proxy", flow="device", detail=err.message)
        login.outcome = err.message
        return
    login.outcome = "ok"
    served = runtime.router.by_name.get(route.name)
    if served is not None and served.credential is not None:
        try:
            await served.credential.refresh()  # adopt the stored login, clear login_required
        except AuthProxyError as err:
            log.warning("login_not_adopted", route=route.name, detail=err.message)
    log.info(
        "login_completed", route=route.name, via="proxy", flow="device", has_refresh_token=bool(token.refresh_token)
    )


def _pending_page(name: str, code: DeviceCode) -> web.Response:
    link = escape(code.link)
    body = (
        f'<p>Open <a href="{link}" rel="noreferrer" target="_blank">{link}</a> on any device and '
        f"confirm the code <strong><code>{escape(code.user_code)}</code></strong>.</p>"
        f"<p>Waiting for the approval; this page reloads every {REFRESH_SECONDS} seconds.</p>"
    )
    return _page(f"Log in route {name}", body, refresh=True)


def _outcome_page(name: str, outcome: str) -> web.Response:
    if outcome == "ok":
        return _page(f"Logged in: route {name}", "<p>authproxy has saved the tokens; you can close this tab.</p>")
    body = f'<p>{escape(outcome)}</p><p><a href="/-/login/{escape(name)}">Start again</a></p>'
    return _page(f"Login failed: route {name}", body, status=400)


def _page(title: str, body: str, *, refresh: bool = False, status: int = 200) -> web.Response:
    meta = f'<meta http-equiv="refresh" content="{REFRESH_SECONDS}">' if refresh else ""
    html = (
        f'<!doctype html><html><head><meta charset="utf-8">{meta}<title>{escape(title)}</title></head>'
        f"<body><h1>{escape(title)}</h1>{body}</body></html>\n"
    )
    return web.Response(text=html, content_type="text/html", status=status, headers=HEADERS)
