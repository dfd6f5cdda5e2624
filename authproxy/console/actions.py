"""What the console's buttons do: renew a route's token now, log it out, and Try it.

Try it sends the request through the proxy's own listener, as any client would (so it is routed,
counted, logged and recorded like the rest); the answer comes back with its heads and body redacted
by the log's rules, so an upstream that echoes a credential shows `[redacted]`, never the token.
"""

from __future__ import annotations

import io
from typing import Any

import aiohttp
from aiohttp import web

from authproxy.errors import AuthProxyError, BadRequest, RouteNotFound
from authproxy.login.cli import run_logout
from authproxy.observability.logging import MASK, Redactor
from authproxy.proxy.recorder import SECRET_HEADERS
from authproxy.proxy.routing import Route
from authproxy.server.runtime import RUNTIME

TRY_BODY_LIMIT = 256 * 1024  # bytes of an answer shown in Try it
TRY_TIMEOUT = 60.0
METHODS = frozenset(("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"))


def served_route(app: web.Application, name: str) -> Route:
    route = app[RUNTIME].router.by_name.get(name)
    if route is None:
        known = ", ".join(sorted(app[RUNTIME].router.by_name)) or "(none)"
        raise RouteNotFound(f"no route {name!r}; routes: {known}", route=name)
    return route


async def renew(app: web.Application, name: str) -> dict[str, Any]:
    """Request a new token now (compare-and-invalidate the current one): the outcome, never the token."""
    route = served_route(app, name)
    if route.credential is None:
        raise BadRequest(f"route {name!r} injects no token (auth.grant: none): nothing to renew", route=name)
    try:
        await route.credential.refresh(stale=route.credential.cached())
    except AuthProxyError as err:
        return {"route": name, "ok": False, "code": err.code, "message": err.message}
    return {"route": name, "ok": True, "message": "Renewed: the route uses a new token."}


async def logout(app: web.Application, name: str) -> dict[str, Any]:
    """What `authproxy logout ROUTE` does (delete from the store, revoke when configured), then reset the
    route's credential so it stops using the tokens it had in memory."""
    route = served_route(app, name)
    runtime = app[RUNTIME]
    out = io.StringIO()
    code = await run_logout(
        route.config, runtime.store, clock=runtime.clock, transport=runtime.transports.for_tokens(route.config), out=out
    )
    result: dict[str, Any] = {"route": name, "ok": code == 0, "message": out.getvalue().strip()}
    if route.credential is not None:
        try:
            await route.credential.refresh()  # stale=None: reset, then whatever the store holds now
        except AuthProxyError as err:
            result["state"] = err.code
    return result


def _text_field(data: dict[str, Any], key: str, default: str = "") -> str:
    value = data.get(key, default)
    if not isinstance(value, str):
        raise BadRequest(f"Try it: {key!r} must be a string")
    return value


async def try_request(app: web.Application, data: dict[str, Any], redactor: Redactor) -> dict[str, Any]:
    """Send one request through the proxy and return its status, heads, timing and body, redacted."""
    name = _text_field(data, "route")
    route = served_route(app, name)
    method = _text_field(data, "method", "GET").upper()
    if method not in METHODS:
        raise BadRequest(f"Try it: method {method!r} is not one of {', '.join(sorted(METHODS))}")
    path = _text_field(data, "path", "/")
    if not path.startswith("/"):
        path = "/" + path
    headers = data.get("headers") or []
    if not isinstance(headers, list) or not all(
        isinstance(h, list) and len(h) == 2 and all(isinstance(x, str) for x in h) for h in headers
    ):
        raise BadRequest("Try it: headers must be a list of [name, value] pairs")
    body = _text_field(data, "body")
    base = app[RUNTIME].url
    if base is None:
        raise BadRequest("Try it: the proxy is not listening yet")
    url = base + route.match_prefix + path
    clock = app[RUNTIME].clock
    started = clock.monotonic()
    timeout = aiohttp.ClientTimeout(total=TRY_TIMEOUT)
    async with (
        aiohttp.ClientSession(timeout=timeout, auto_decompress=True, cookie_jar=aiohttp.DummyCookieJar()) as session,
        session.request(
            method,
            url,
            headers=[(k, v) for k, v in headers if k.strip()],
            data=body.encode() if body else None,
            allow_redirects=False,
            ssl=False,  # our own listener, on loopback
        ) as answer,
    ):
        raw = await answer.content.read(TRY_BODY_LIMIT + 1)
        elapsed = clock.monotonic() - started
        secret = SECRET_HEADERS | {h.lower() for h in route.inject}
        return {
            "url": redactor.text(url),
            "status": answer.status,
            "reason": answer.reason,
            "duration_ms": round(elapsed * 1000, 1),
            "headers": [[k, MASK if k.lower() in secret else redactor.text(v)] for k, v in answer.headers.items()],
            "body": redactor.text(raw[:TRY_BODY_LIMIT].decode("utf-8", "replace")),
            "truncated": len(raw) > TRY_BODY_LIMIT,
            "content_type": answer.content_type,
        }
