"""build_app(config) -> web.Application: wires routes, credentials, sessions and admin endpoints.

State lives on the app under typed AppKeys (no module globals); sessions, stores and
credentials are created in a cleanup context so they live exactly as long as the app.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import structlog
from aiohttp import web

from authproxy.clock import Clock, SystemClock
from authproxy.config.schema import Config
from authproxy.credentials.build import build_credential
from authproxy.credentials.credential import Credential
from authproxy.login.routes import add_login_routes
from authproxy.observability.logging import Redactor
from authproxy.observability.metrics import Stats
from authproxy.proxy.access import BrowserGuard, Gatekeeper
from authproxy.proxy.handler import ProxyHandler
from authproxy.proxy.routing import Route, Router
from authproxy.server.admin import add_admin_routes
from authproxy.server.middleware import listener_middleware
from authproxy.server.runtime import CLOCK, PROXY, RUNTIME, STATS, STORE, TOKEN_SESSION, Runtime
from authproxy.stores.base import TokenStore
from authproxy.stores.build import build_store
from authproxy.upstream import UpstreamPool

log = structlog.get_logger("authproxy.app")


def build_app(
    config: Config,
    *,
    clock: Clock | None = None,
    store: TokenStore | None = None,
    config_path: str | None = None,
    redactor: Redactor | None = None,
) -> web.Application:
    """The aiohttp application serving `config`; nothing touches the network until startup."""
    clock = clock or SystemClock()
    stats = Stats()
    router = Router([Route(route) for route in config.routes.values()])
    gate = Gatekeeper(config, clock)
    handler = ProxyHandler(router, clock, stats, gate, config.limits, access_log=config.log.access_log)
    runtime = Runtime(config, router, gate, BrowserGuard(config), config_path, clock.monotonic(), redactor)
    app = web.Application(middlewares=[listener_middleware(handler, runtime)])
    app[RUNTIME] = runtime
    app[CLOCK] = clock
    app[STATS] = stats
    app[PROXY] = handler
    app[STORE] = store or build_store(config)
    add_admin_routes(app)
    add_login_routes(app)
    app.router.add_route("*", "/{tail:.*}", handler.__call__)  # last: admin routes above win
    app.cleanup_ctx.append(_sessions)
    app.cleanup_ctx.append(_credentials)
    return app


def upstream_session() -> aiohttp.ClientSession:
    """aiohttp's client for websocket upstreams (plain requests go through `upstream.UpstreamPool`)."""
    connector = aiohttp.TCPConnector(limit=512, limit_per_host=0, keepalive_timeout=60, enable_cleanup_closed=True)
    return aiohttp.ClientSession(
        connector=connector,
        auto_decompress=False,  # compressed bodies pass through; Content-Encoding stays true
        skip_auto_headers=("Accept", "Accept-Encoding", "User-Agent"),  # send only what the client sent
        cookie_jar=aiohttp.DummyCookieJar(),  # never share one client's upstream cookies with another
        trust_env=False,
        read_bufsize=256 * 1024,
        timeout=aiohttp.ClientTimeout(total=None),
    )


def token_session() -> aiohttp.ClientSession:
    """A separate session for token endpoints, with a hard overall timeout."""
    return aiohttp.ClientSession(
        cookie_jar=aiohttp.DummyCookieJar(), trust_env=False, timeout=aiohttp.ClientTimeout(total=30, sock_connect=10)
    )


async def _sessions(app: web.Application) -> AsyncIterator[None]:
    proxy = app[PROXY]
    proxy.upstream = UpstreamPool(limit=512, idle_timeout=60.0)
    proxy.session = upstream_session()
    app[TOKEN_SESSION] = token_session()
    yield
    await proxy.upstream.close()
    await proxy.session.close()
    await app[TOKEN_SESSION].close()


async def _credentials(app: web.Application) -> AsyncIterator[None]:
    for route in app[RUNTIME].router.routes:
        if route.ssl is False and route.upstream.scheme == "https":
            log.warning(
                "tls_verification_off",
                route=route.name,
                detail="routes.*.tls.verify is false: anyone "
                "on the path to the upstream can read and change this route's traffic and credentials",
            )
        route.credential = make_credential(app, route)
    yield
    runtime = app[RUNTIME]
    for credential in {r.credential for r in runtime.router.routes if r.credential} | set(runtime.retired):
        await credential.close()


def make_credential(app: web.Application, route: Route, *, start: bool = True) -> Credential | None:
    """Build the route's credential with the app's shared parts (and start renewing it, unless `start` is False)."""
    credential = build_credential(route.config, http=app[TOKEN_SESSION], store=app[STORE], clock=app[CLOCK])
    if credential is not None and start:
        credential.start()
    return credential
