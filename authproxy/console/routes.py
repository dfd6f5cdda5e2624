"""The console at /-/: the page, its script and style, the JSON it polls, its actions, the Postman export.

Every answer carries a strict Content-Security-Policy (`default-src 'self'`, no inline script or
style, no framing) and `Cache-Control: no-store`. Reads are for the admin key or a member key (its
own routes and requests only); actions (POST) are for the admin key, from the console's own page
(session.py). Nothing here shows a token: the status document carries none, and request heads and
Try it answers are redacted (proxy/recorder.py, actions.py).
"""

from __future__ import annotations

import json
from importlib import resources
from typing import Any

from aiohttp import web

from authproxy.console import actions
from authproxy.console.page import render
from authproxy.console.postman import collection, environment
from authproxy.console.session import SESSIONS, Sessions, Viewer, admin_only, viewer
from authproxy.errors import AuthProxyError, BadRequest, RouteNotFound
from authproxy.observability.logging import Redactor
from authproxy.proxy.headers import request_id_from
from authproxy.proxy.responses import error_response
from authproxy.server.runtime import REQUESTS, RUNTIME
from authproxy.server.status import status_document

CSP = (
    "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; connect-src 'self'; "
    "frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
)
STATIC = {"console.js": "text/javascript", "console.css": "text/css"}
LIST_LIMIT = 200


def _secure(response: web.StreamResponse) -> web.StreamResponse:
    response.headers["Content-Security-Policy"] = CSP
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "no-referrer"
    response.headers["X-Frame-Options"] = "DENY"
    response.headers["Cache-Control"] = "no-store"
    return response


def _json(data: Any, status: int = 200) -> web.StreamResponse:
    return _secure(web.json_response(data, status=status))


def _handle(handler: Any) -> Any:
    """Our JSON error body (with the Basic challenge on a 401) for what a console handler refuses."""

    async def run(request: web.Request) -> web.StreamResponse:
        try:
            return await handler(request)
        except AuthProxyError as err:
            response = error_response(err, request_id_from(request.headers))
            if err.status == 401:
                response.headers["WWW-Authenticate"] = 'Basic realm="authproxy admin", charset="UTF-8"'
            return _secure(response)

    return run


def _document(request: web.Request, who: Viewer) -> dict[str, Any]:
    runtime = request.app[RUNTIME]
    only = None if who.client is None else frozenset(r.name for r in runtime.router.routes if who.may_see(r.name))
    return status_document(request.app, only)


async def page(request: web.Request) -> web.StreamResponse:
    who = viewer(request)
    response = web.Response(content_type="text/html", charset="utf-8")
    sessions = request.app[SESSIONS]
    csrf = sessions.csrf(sessions.session_of(request, response)) if who.admin else ""
    response.text = render(_document(request, who), csrf=csrf, viewer=who.name, admin=who.admin)
    return _secure(response)


async def static(request: web.Request) -> web.StreamResponse:
    name = request.match_info["name"]
    if name not in STATIC:
        raise RouteNotFound(f"no console file {name!r}")
    body = resources.files("authproxy.console").joinpath("static", name).read_bytes()
    return _secure(web.Response(body=body, content_type=STATIC[name], charset="utf-8"))


async def state(request: web.Request) -> web.StreamResponse:
    who = viewer(request)
    document = _document(request, who)
    document["viewer"] = {"name": who.name, "admin": who.admin}
    return _json(document)


async def requests_list(request: web.Request) -> web.StreamResponse:
    who = viewer(request)
    log = request.app[REQUESTS]
    query = request.query
    found = log.newest(
        route=query.get("route") or None,
        status=query.get("status") or None,
        client=query.get("client") or None,
        only_client=None if who.client is None else who.client.name,
    )
    rows = []
    for entry in found:
        rows.append(log.summary(entry))
        if len(rows) >= LIST_LIMIT:
            break
    return _json({"requests": rows, "kept": len(log.entries), "limit": log.entries.maxlen})


async def request_detail(request: web.Request) -> web.StreamResponse:
    who = viewer(request)
    log = request.app[REQUESTS]
    raw = request.match_info["id"]
    entry = log.find(int(raw)) if raw.isdigit() else None
    if entry is None or (who.client is not None and entry[7].client != who.client.name):
        raise RouteNotFound(f"request {raw} is not (or no longer) among the recent requests")
    return _json(log.detail(entry))


async def _post_body(request: web.Request) -> dict[str, Any]:
    try:
        data = json.loads(await request.read() or b"{}")
    except ValueError:
        raise BadRequest("the console's request body must be JSON") from None
    if not isinstance(data, dict):
        raise BadRequest("the console's request body must be a JSON object")
    return data


def _act(request: web.Request) -> None:
    admin_only(viewer(request))
    request.app[SESSIONS].check_post(request)


async def renew(request: web.Request) -> web.StreamResponse:
    _act(request)
    return _json(await actions.renew(request.app, request.match_info["route"]))


async def logout(request: web.Request) -> web.StreamResponse:
    _act(request)
    return _json(await actions.logout(request.app, request.match_info["route"]))


async def try_it(request: web.Request) -> web.StreamResponse:
    _act(request)
    redactor = request.app[RUNTIME].redactor or Redactor()
    return _json(await actions.try_request(request.app, await _post_body(request), redactor))


def _base(request: web.Request) -> str:
    return f"{request.scheme}://{request.host}"


async def postman_collection(request: web.Request) -> web.StreamResponse:
    viewer(request)
    response = _json(collection(request.app[RUNTIME].config, _base(request)))
    response.headers["Content-Disposition"] = 'attachment; filename="authproxy.postman_collection.json"'
    return response


async def postman_environment(request: web.Request) -> web.StreamResponse:
    viewer(request)
    response = _json(environment(request.app[RUNTIME].config, _base(request)))
    response.headers["Content-Disposition"] = 'attachment; filename="authproxy.postman_environment.json"'
    return response


def add_console_routes(app: web.Application) -> None:
    """Register the console (idempotent); call before the app starts."""
    if SESSIONS in app:
        return
    app[SESSIONS] = Sessions()
    app.router.add_get("/-/", _handle(page))
    app.router.add_get("/-/console/static/{name}", _handle(static))
    app.router.add_get("/-/console/state", _handle(state))
    app.router.add_get("/-/console/requests", _handle(requests_list))
    app.router.add_get("/-/console/requests/{id}", _handle(request_detail))
    app.router.add_post("/-/console/routes/{route}/renew", _handle(renew))
    app.router.add_post("/-/console/routes/{route}/logout", _handle(logout))
    app.router.add_post("/-/console/try", _handle(try_it))
    app.router.add_get("/-/console/postman/collection.json", _handle(postman_collection))
    app.router.add_get("/-/console/postman/environment.json", _handle(postman_environment))
