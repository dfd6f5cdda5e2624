"""Typed keys for the state kept on the aiohttp application (no module-level globals).

What can change at runtime (config and routes, on reload) sits in one mutable `Runtime`,
because an aiohttp app's own mapping is frozen once it has started.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import aiohttp
from aiohttp import web

from authproxy.clock import Clock
from authproxy.config.schema import Config
from authproxy.observability.logging import Redactor
from authproxy.observability.metrics import Stats
from authproxy.proxy.routing import Router
from authproxy.stores.base import TokenStore

if TYPE_CHECKING:
    from authproxy.credentials.credential import Credential
    from authproxy.proxy.access import BrowserGuard, Gatekeeper


@dataclass(slots=True)
class Runtime:
    config: Config
    router: Router
    gate: Gatekeeper  # team mode: client keys
    guard: BrowserGuard  # Host / Origin / cross-site checks
    config_path: str | None = None  # where `reload` re-reads the config from
    started: float = 0.0  # clock.monotonic() at build time
    redactor: Redactor | None = None
    url: str | None = None  # where the main listener is actually bound (set at start)
    admin_port: int | None = None  # bound port of the separate admin listener, when there is one
    retired: dict[Credential, asyncio.Task[None]] = field(default_factory=dict)  # replaced by a reload


RUNTIME = web.AppKey("runtime", Runtime)
CLOCK = web.AppKey("clock", Clock)
STATS = web.AppKey("stats", Stats)
STORE = web.AppKey("store", TokenStore)
TOKEN_SESSION = web.AppKey("token_session", aiohttp.ClientSession)
PROXY = web.AppKey("proxy", "ProxyHandler")
