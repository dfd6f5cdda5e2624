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
from dataclasses import dataclass, field

from aiohttp import web

from authproxy.clock import Clock
from authproxy.config.schema import Config, RouteConfig
from authproxy.credentials.build import build_credential
from authproxy.credentials.credential import Credential
from authproxy.credentials.discovery import DiscoveryCache
from authproxy.observability.logging import Redactor
from authproxy.observability.metrics import Stats
from authproxy.proxy.access import BrowserGuard, Gatekeeper
from authproxy.proxy.routing import Route, Router
from authproxy.stores.base import TokenStore
from authproxy.stores.build import build_store
from authproxy.upstream.pool import NativeTransport
from authproxy.upstream.transport import Endpoint, Transport

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
    discovery: DiscoveryCache = field(default_factory=DiscoveryCache)  # auth.issuer metadata; emptied by a reload

    def new_route(self, cfg: RouteConfig, keep: Credential | None = None, config: Config | None = None) -> Route:
        """A route of `config` (default: the runtime's) with its transport, and `keep` or else a new credential
        (not started)."""
        route = Route(cfg)
        route.endpoint = Endpoint(route.upstream, route.tls, limit=connection_share(cfg, config or self.config))
        route.transport = self.transports.for_route(cfg)
        route.credential = keep or build_credential(
            cfg, transport=self.transports.for_tokens(cfg), store=self.store, clock=self.clock, discovery=self.discovery
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
) -> Runtime:
    """Everything `config` describes, built and checked (ConfigError), nothing started or connected."""
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
    )
    runtime.router = Router([runtime.new_route(cfg) for cfg in config.routes.values()])
    return runtime


RUNTIME = web.AppKey("runtime", Runtime)
STATS = web.AppKey("stats", Stats)
PROXY = web.AppKey("proxy", "ProxyHandler")
