"""build_app(config) -> web.Application: the runtime, the middleware, the admin and login endpoints, the proxy.

Everything is built (and checked) here, before the app starts; starting only starts the background
renewals, and stopping closes credentials, then the store, then the transports (aiohttp's
cleanup_ctx, so they live exactly as long as the app).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping

import structlog
from aiohttp import web

from authproxy.clock import Clock, SystemClock
from authproxy.config.checks import scope_warnings
from authproxy.config.schema import Config
from authproxy.console.routes import add_console_routes
from authproxy.login.routes import add_login_routes
from authproxy.observability.logging import Redactor
from authproxy.observability.metrics import Stats
from authproxy.proxy.handler import ProxyHandler
from authproxy.server.admin import add_admin_routes
from authproxy.server.middleware import listener_middleware
from authproxy.server.runtime import PROXY, REQUESTS, RUNTIME, STATS, build_request_log, build_runtime
from authproxy.stores.base import TokenStore

log = structlog.get_logger("authproxy.app")


def build_app(
    config: Config,
    *,
    clock: Clock | None = None,
    store: TokenStore | None = None,
    config_path: str | None = None,
    redactor: Redactor | None = None,
    environ: Mapping[str, str] | None = None,
) -> web.Application:
    """The aiohttp application serving `config`; ConfigError now for what cannot work, nothing connected yet."""
    clock = clock or SystemClock()
    runtime = build_runtime(
        config, clock=clock, store=store, config_path=config_path, redactor=redactor, environ=environ
    )
    stats = Stats()
    handler = ProxyHandler(runtime.router, clock, stats, runtime.gate, config.limits, access_log=config.log.access_log)
    app = web.Application(middlewares=[listener_middleware(handler, runtime)])
    app[RUNTIME] = runtime
    app[STATS] = stats
    app[PROXY] = handler
    app[REQUESTS] = build_request_log(runtime, redactor)
    if config.console.requests or config.trace:  # else recording costs nothing at all
        handler.recorder = app[REQUESTS]
    add_admin_routes(app)
    add_login_routes(app)
    add_console_routes(app)
    app.router.add_route("*", "/{tail:.*}", handler.__call__)  # last: admin routes above win
    app.cleanup_ctx.append(_lifecycle)
    return app


async def _lifecycle(app: web.Application) -> AsyncIterator[None]:
    runtime = app[RUNTIME]
    for warning in runtime.config.load_warnings:
        log.warning("config_warning", detail=warning)
    for warning in scope_warnings(runtime.config):
        log.warning("sensitive_scope_shared", detail=warning)
    for route in runtime.router.routes:
        if not route.tls.verify and route.upstream.scheme == "https":
            log.warning(
                "tls_verification_off",
                route=route.name,
                detail="routes.*.tls.verify is false: anyone "
                "on the path to the upstream can read and change this route's traffic and credentials",
            )
        if route.credential is not None:
            route.credential.start()
    yield
    await runtime.close()
