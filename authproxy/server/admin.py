"""The admin endpoints under /-/: health, ready, status, metrics and reload.

They read the app's state (router, credentials, stats) and never show a token or a secret:
credential `status()` carries none, and route details are limited to names and URLs.
"""

from __future__ import annotations

import html
from typing import Any

from aiohttp import web

from authproxy import __version__
from authproxy.observability.metrics import Collector, exposition
from authproxy.proxy.routing import Route
from authproxy.server.reload import reload_config
from authproxy.server.runtime import RUNTIME, STATS


def add_admin_routes(app: web.Application) -> None:
    app.router.add_get("/-/health", health)
    app.router.add_get("/-/ready", ready)
    app.router.add_get("/-/status", status)
    app.router.add_get("/-/metrics", metrics)
    app.router.add_post("/-/reload", reload)


async def health(request: web.Request) -> web.Response:
    """Liveness: the process is up and serving (no dependency is checked)."""
    return web.json_response({"status": "ok"})


def credential_states(app: web.Application) -> dict[str, dict[str, Any]]:
    return {r.name: r.credential.status() for r in app[RUNTIME].router.routes if r.credential is not None}


async def ready(request: web.Request) -> web.Response:
    """Readiness: 200 only when every route that needs a token holds a valid one.

    An unreachable shared store (redis) is reported but does not make the proxy unready: it keeps
    serving its cached tokens, and taking every replica out at once would turn a blip into an outage.
    """
    not_ready = [
        {"route": name, "state": state["state"], "error": state.get("last_error_code"), "message": state.get("message")}
        for name, state in credential_states(request.app).items()
        if not state.get("valid")
    ]
    store = request.app[RUNTIME].store.status()
    extra = {"store": store} if store["state"] == "unavailable" else {}
    if not_ready:
        return web.json_response({"ready": False, "not_ready": not_ready, **extra}, status=503)
    return web.json_response({"ready": True, **extra})


def status_document(app: web.Application) -> dict[str, Any]:
    states = credential_states(app)
    stats = app[STATS]
    routes = []
    for route in sorted(app[RUNTIME].router.routes, key=lambda r: r.prefix):
        counts = stats.route(route.name)
        routes.append(
            {
                "name": route.name,
                "prefix": route.prefix,
                "upstream": route.config.upstream,
                "grant": route.config.auth.grant,
                "token": states.get(route.name),
                "requests": counts.total,
                "errors": counts.errors,
                "retries_401": counts.retries_401,
                "in_flight": counts.in_flight,
                **egress_status(route),
            }
        )
    return {
        "version": __version__,
        "uptime_s": round(app[RUNTIME].clock.monotonic() - app[RUNTIME].started, 1),
        "listen": app[RUNTIME].url or app[RUNTIME].config.listen,
        "store": app[RUNTIME].store.status(),
        "routes": routes,
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


async def status(request: web.Request) -> web.Response:
    """JSON for tools; an HTML table when a browser asks for text/html."""
    document = status_document(request.app)
    accept = request.headers.get("Accept", "")
    if "text/html" in accept and "application/json" not in accept:
        return web.Response(text=_status_html(document), content_type="text/html")
    return web.json_response(document)


async def metrics(request: web.Request) -> web.Response:
    collector = Collector(request.app[STATS], lambda: credential_states(request.app))
    try:
        body, content_type = exposition(collector)
    except ImportError:
        return web.json_response(
            {
                "error": {
                    "code": "metrics_unavailable",
                    "message": "install the metrics extra: pip install 'authproxy[metrics]'",
                    "route": None,
                    "request_id": None,
                }
            },
            status=501,
        )
    response = web.Response(body=body)
    response.headers["Content-Type"] = content_type
    return response


async def reload(request: web.Request) -> web.Response:
    """Re-read the config file; an invalid one leaves the running config in place (400 + every error)."""
    result = await reload_config(request.app)
    return web.json_response(result.body(), status=result.status)


def _status_html(document: dict[str, Any]) -> str:
    rows = []
    for route in document["routes"]:
        token = route["token"] or {}
        cells = [
            route["name"],
            route["prefix"],
            route["upstream"],
            route["grant"],
            token.get("state", "-"),
            _seconds(token.get("expires_in")),
            token.get("last_outcome") or "-",
            token.get("last_error_code") or "-",
            route["requests"],
            route["errors"],
            route["retries_401"],
        ]
        rows.append("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in cells) + "</tr>")
    head = [
        "route",
        "prefix",
        "upstream",
        "grant",
        "token",
        "expires in",
        "last refresh",
        "last error",
        "requests",
        "errors",
        "401 retries",
    ]
    return (
        "<!doctype html><html><head><meta charset='utf-8'><title>authproxy status</title>"
        "<style>body{font-family:sans-serif}td,th{padding:4px 10px;text-align:left}"
        "tr:nth-child(even){background:#f3f3f3}</style></head><body>"
        f"<h1>authproxy {html.escape(document['version'])}</h1>"
        f"<p>listening on {html.escape(document['listen'])}, up {document['uptime_s']} s</p>"
        "<table><tr>" + "".join(f"<th>{h}</th>" for h in head) + "</tr>" + "".join(rows) + "</table></body></html>"
    )


def _seconds(value: object) -> str:
    return "-" if value is None else f"{value} s"
