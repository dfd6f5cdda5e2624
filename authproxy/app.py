"""build_app(config) -> web.Application: wires routes, credentials, sessions and admin endpoints.

State lives on the app under typed AppKeys (no module globals); sessions, stores and
credentials are created in a cleanup context so they live exactly as long as the app.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import structlog
from aiohttp import web
from aiohttp.typedefs import Handler, Middleware
from aiohttp.web_urldispatcher import SystemRoute

from .clock import Clock, SystemClock
from .config_schema import Config
from .credentials import Credential, build_credential
from .proxy import ProxyHandler
from .routing import Route, Router
from .stores import TokenStore
from .stores.memory import MemoryStore

CONFIG = web.AppKey("config", Config)
CLOCK = web.AppKey("clock", Clock)
ROUTER = web.AppKey("router", Router)
PROXY = web.AppKey("proxy", ProxyHandler)
STORE = web.AppKey("store", TokenStore)
TOKEN_SESSION = web.AppKey("token_session", aiohttp.ClientSession)
ADMIN_PREFIX = "/-/"

log = structlog.get_logger("authproxy.app")


def refusal_middleware(proxy: ProxyHandler) -> Middleware:
    """Hand targets aiohttp's router cannot match (CONNECT, `OPTIONS *`) to the proxy handler.

    The router would answer them with a plain-text 404; the proxy refuses them with JSON errors.
    """

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if isinstance(request.match_info.route, SystemRoute) and not request.raw_path.startswith(ADMIN_PREFIX):
            return await proxy(request)
        return await handler(request)

    return middleware


def build_app(config: Config, *, clock: Clock | None = None, store: TokenStore | None = None) -> web.Application:
    """The aiohttp application serving `config`; nothing touches the network until startup."""
    clock = clock or SystemClock()
    router = Router([Route(route) for route in config.routes.values()])
    handler = ProxyHandler(router, clock, access_log=config.log.access_log)
    largest_replay = max((r.retry_body_limit for r in config.routes.values()), default=0)
    app = web.Application(middlewares=[refusal_middleware(handler)], client_max_size=largest_replay + 1)
    app[CONFIG] = config
    app[CLOCK] = clock
    app[ROUTER] = router
    app[PROXY] = handler
    app[STORE] = store or MemoryStore()
    app.router.add_get("/-/health", health)
    app.router.add_route("*", "/{tail:.*}", handler.__call__)  # last: admin routes above win
    app.cleanup_ctx.append(_sessions)
    app.cleanup_ctx.append(_credentials)
    return app


def upstream_session() -> aiohttp.ClientSession:
    """One pooled session for all upstream traffic: bytes pass through untouched."""
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
    proxy.session = upstream_session()
    app[TOKEN_SESSION] = token_session()
    yield
    await proxy.session.close()
    await app[TOKEN_SESSION].close()


async def _credentials(app: web.Application) -> AsyncIterator[None]:
    credentials: list[Credential] = []
    for route in app[ROUTER].routes:
        route.credential = build_credential(route.config, http=app[TOKEN_SESSION], store=app[STORE], clock=app[CLOCK])
        if route.credential is not None:
            credentials.append(route.credential)
            route.credential.start()
    yield
    for credential in credentials:
        await credential.close()


async def health(request: web.Request) -> web.Response:
    """Liveness: the process is up and serving."""
    return web.json_response({"status": "ok"})
