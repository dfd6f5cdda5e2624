"""Everything a running proxy holds, built from a config without touching the network.

`build_runtime(config)` builds the routes with their credentials (not started), the token store,
the team-mode gate and the browser guard, and the outbound transports (no connection is opened
before the first request). `authproxy run` serves it; `authproxy check` builds the very same and
closes it, so a config that `check` accepts is one `run` can build. What a reload replaces (config,
routes, gate, guard) sits in the one mutable `Runtime`, because an aiohttp app's own mapping is
frozen once it has started; the app reaches it through typed `AppKey`s (no module globals).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Mapping
from dataclasses import dataclass, field

import structlog
from aiohttp import web
from yarl import URL

from authproxy.clock import Clock
from authproxy.config.schema import Config, RouteConfig
from authproxy.credentials.build import build_credential
from authproxy.credentials.credential import Credential
from authproxy.credentials.discovery import DiscoveryCache
from authproxy.observability.logging import Redactor
from authproxy.observability.metrics import Stats
from authproxy.proxy.access import BrowserGuard, Gatekeeper
from authproxy.proxy.recorder import RequestLog
from authproxy.proxy.routing import Route, Router
from authproxy.stores.base import TokenStore
from authproxy.stores.build import build_store
from authproxy.upstream.egress import EgressPolicy, environment_secrets
from authproxy.upstream.pool import NativeTransport
from authproxy.upstream.transport import Endpoint, Transport

log = structlog.get_logger("authproxy.egress")
TOKEN_CONNECTIONS = 32  # token requests have a pool of their own: busy upstreams never starve a renewal
IDLE_TIMEOUT = 60.0


class Transports:
    """The app's outbound transports by kind ("native" or "aiohttp"), made on first use, closed at shutdown.

    Token requests get a pool of their own, so upstream traffic can never keep a token from renewing.
    """

    def __init__(self, clock: Clock, upstream_connections: int = 512, rest: float = 0.0) -> None:
        self._clock = clock
        self._upstream_connections = upstream_connections  # proxied requests and websockets, all routes together
        self._rest = rest  # before an upstream connection is reused (token endpoints answer once: none there)
        self._made: dict[tuple[str, str], Transport] = {}

    def for_route(self, route: RouteConfig) -> Transport:
        return self._get(_kind(route.transport), "upstream", self._upstream_connections, self._rest)

    def for_tokens(self, route: RouteConfig) -> Transport:
        return self._get(_kind(route.transport), "tokens", TOKEN_CONNECTIONS, 0.0)

    def _get(self, kind: str, purpose: str, limit: int, rest: float) -> Transport:
        transport = self._made.get((kind, purpose))
        if transport is None:
            if kind == "aiohttp":
                from authproxy.upstream.aiohttp_transport import AiohttpTransport

                transport = AiohttpTransport(limit=limit, idle_timeout=IDLE_TIMEOUT, rest=rest)
            else:
                transport = NativeTransport(limit=limit, idle_timeout=IDLE_TIMEOUT, rest=rest, clock=self._clock)
            self._made[(kind, purpose)] = transport
        return transport

    def connections(self) -> dict[str, dict[str, int]]:
        return {f"{kind}/{purpose}": t.connections() for (kind, purpose), t in sorted(self._made.items())}

    async def close(self) -> None:
        for transport in self._made.values():
            await transport.close()


def _kind(setting: str) -> str:
    """`auto` is the native client (it does all a route can ask for); `aiohttp` picks aiohttp's."""
    return "aiohttp" if setting == "aiohttp" else "native"


@dataclass(slots=True)
class Runtime:
    """What serving `config` needs; a reload swaps config, router, gate and guard together."""

    config: Config
    router: Router
    gate: Gatekeeper  # team mode: client keys
    guard: BrowserGuard  # Host / Origin / cross-site checks
    store: TokenStore
    transports: Transports
    clock: Clock
    config_path: str | None = None  # where `reload` re-reads the config from
    started: float = 0.0  # clock.monotonic() at build time
    redactor: Redactor | None = None
    url: str | None = None  # where the main listener is actually bound (set at start)
    admin_port: int | None = None  # bound port of the separate admin listener, when there is one
    retired: dict[Credential, asyncio.Task[None]] = field(default_factory=dict)  # replaced by a reload
    environ: Mapping[str, str] = field(default_factory=lambda: os.environ)  # HTTPS_PROXY, NO_PROXY (egress.py)
    discovery: DiscoveryCache = field(default_factory=DiscoveryCache)  # auth.issuer metadata; emptied by a reload

    def new_route(self, cfg: RouteConfig, keep: Credential | None = None, config: Config | None = None) -> Route:
        """A route of `config` (default: the runtime's) with its transport, and `keep` or else a new credential
        (not started)."""
        config = config or self.config
        route = Route(cfg)
        policy = EgressPolicy(config, cfg, self.environ)
        for warning in policy.warnings:
            log.warning("egress_proxy_ignored_entries", route=cfg.name, problem=warning)
        route.egress = policy.choose(route.upstream)
        token_target = cfg.auth.token_url or cfg.auth.issuer  # with discovery: the issuer's host until resolved
        if token_target and cfg.auth.grant not in ("none", "static"):
            route.token_egress = policy.choose(URL(token_target))
        route.endpoint = Endpoint(
            route.upstream, route.tls, limit=connection_share(cfg, config), egress=route.egress.egress
        )
        route.transport = self.transports.for_route(cfg)
        route.credential = keep or build_credential(
            cfg,
            transport=self.transports.for_tokens(cfg),
            store=self.store,
            clock=self.clock,
            config_path=self.config_path,
            egress=policy,
            discovery=self.discovery,
        )
        return route

    def credentials(self) -> set[Credential]:
        return {r.credential for r in self.router.routes if r.credential is not None} | set(self.retired)

    async def close(self) -> None:
        """Stop renewing, then close the store (a closing credential may still save) and the transports."""
        for credential in self.credentials():
            await credential.close()
        await self.store.close()
        await self.transports.close()


def connection_share(cfg: RouteConfig, config: Config) -> int | None:
    """Upstream connections a route may hold: its `max_connections`, else half of all of them when there are
    several routes, so one route's slow clients or upstream cannot starve the others."""
    if cfg.max_connections is not None:
        return cfg.max_connections
    return max(1, config.limits.upstream_connections // 2) if len(config.routes) > 1 else None


def build_runtime(
    config: Config,
    *,
    clock: Clock,
    store: TokenStore | None = None,
    config_path: str | None = None,
    redactor: Redactor | None = None,
    environ: Mapping[str, str] | None = None,
) -> Runtime:
    """Everything `config` describes, built and checked (ConfigError), nothing started or connected.

    `environ`: where HTTPS_PROXY, HTTP_PROXY and NO_PROXY are read (default: the process's environment)."""
    environ = os.environ if environ is None else environ
    if redactor is not None:
        redactor.add(*environment_secrets(environ))
    runtime = Runtime(
        config,
        Router([]),
        Gatekeeper(config, clock),
        BrowserGuard(config),
        store or build_store(config),
        Transports(clock, config.limits.upstream_connections, config.limits.connection_rest),
        clock,
        config_path,
        clock.monotonic(),
        redactor,
        environ=environ,
    )
    runtime.router = Router([runtime.new_route(cfg) for cfg in config.routes.values()])
    return runtime


RUNTIME = web.AppKey("runtime", Runtime)
STATS = web.AppKey("stats", Stats)
PROXY = web.AppKey("proxy", "ProxyHandler")
REQUESTS = web.AppKey("requests", RequestLog)  # recent requests: the console's list and the trace


def build_request_log(runtime: Runtime, redactor: Redactor | None) -> RequestLog:
    """The request log of `console:` and `trace:`; injected header names are looked up live (reload)."""
    config = runtime.config

    def injected(route: str | None) -> list[str]:
        found = runtime.router.by_name.get(route) if route is not None else None
        return list(found.inject) if found is not None else []

    capture = (config.console.capture_bodies or 0) * 1024
    return RequestLog(
        config.console.requests, runtime.clock, redactor, capture_bytes=capture, trace=config.trace, injected=injected
    )
