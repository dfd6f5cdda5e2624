"""The /-/status document: what tools (`authproxy status`, dashboards) and the console read.

Timestamps are ISO 8601 UTC strings to the second (`"2026-12-04T11:22:47Z"`), durations whole
seconds: an epoch float means nothing to a person reading the JSON, and a float of seconds
suggests a precision the refresher does not have.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from authproxy import __version__
from authproxy.proxy.recorder import iso
from authproxy.proxy.routing import Route
from authproxy.server.runtime import RUNTIME, STATS

DURATIONS = ("expires_in", "renew_in", "retry_in")
TIMESTAMPS = ("last_refresh_at", "expires_at")


def credential_states(app: web.Application) -> dict[str, dict[str, Any]]:
    return {r.name: r.credential.status() for r in app[RUNTIME].router.routes if r.credential is not None}


def token_document(state: dict[str, Any] | None) -> dict[str, Any] | None:
    """A credential's status() with timestamps as ISO strings and durations as whole seconds."""
    if state is None:
        return None
    out = dict(state)
    for key in TIMESTAMPS:
        out[key] = iso(out.get(key))
    for key in DURATIONS:
        if out.get(key) is not None:
            out[key] = round(out[key])
    return out


def route_document(app: web.Application, route: Route, state: dict[str, Any] | None) -> dict[str, Any]:
    counts = app[STATS].route(route.name)
    return {
        "name": route.name,
        "prefix": route.prefix,
        "upstream": route.config.upstream,
        "grant": route.config.auth.grant,
        "token": token_document(state),
        "requests": counts.total,
        "errors": counts.errors,
        "retries_401": counts.retries_401,
        "in_flight": counts.in_flight,
        **egress_status(route),
    }


def egress_status(route: Route) -> dict[str, Any]:
    """How the route reaches its upstream (and its token endpoint): an egress proxy (password masked) or direct,
    and which key or environment variable decided it."""
    found: dict[str, Any] = {}
    if route.egress is not None:
        found["egress"] = route.egress.status()
    if route.token_egress is not None:
        found["token_egress"] = route.token_egress.status()
    return found


def status_document(app: web.Application, only: frozenset[str] | None = None) -> dict[str, Any]:
    """Every route (or those in `only`: a member key's), the store, version and uptime."""
    states = credential_states(app)
    runtime = app[RUNTIME]
    routes = [
        route_document(app, route, states.get(route.name))
        for route in sorted(runtime.router.routes, key=lambda r: r.prefix)
        if only is None or route.name in only
    ]
    return {
        "version": __version__,
        "now": iso(runtime.clock.now()),
        "uptime_s": round(runtime.clock.monotonic() - runtime.started),
        "listen": runtime.url or runtime.config.listen,
        "store": runtime.store.status(),
        "routes": routes,
    }
