"""The one middleware: listener separation, browser protection, the admin key, and JSON refusals."""

from __future__ import annotations

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware
from aiohttp.web_urldispatcher import SystemRoute

from authproxy.errors import RouteNotFound, Unauthorized
from authproxy.proxy.handler import ProxyHandler
from authproxy.proxy.headers import request_id_from
from authproxy.proxy.responses import error_response
from authproxy.server.runtime import Runtime

ADMIN_PREFIX = "/-/"
LOGIN_PREFIX = "/-/login/"  # browser navigations (the provider redirects back here); state-protected
OPEN_ADMIN_PATHS = frozenset(("/-/health",))  # liveness probes carry no key
CONSOLE_PREFIX = "/-/console/"  # with "/-/" itself: the console checks its viewers (admin or member key)


def is_console(request: web.Request) -> bool:
    """Whether the handler the router picked is the console's: decided by the matched resource, never by the
    raw path (`/-/console/../status` must stay an admin endpoint)."""
    resource = request.match_info.route.resource
    canonical = resource.canonical if resource is not None else ""
    return canonical == ADMIN_PREFIX or canonical.startswith(CONSOLE_PREFIX)


def listener_middleware(proxy: ProxyHandler, runtime: Runtime) -> Middleware:
    """Keep admin and proxy traffic on their own listeners, and refuse what the router cannot match.

    aiohttp's router answers CONNECT and `OPTIONS *` with a plain-text 404; the proxy handler
    refuses them with JSON errors instead. With a separate admin listener, /-/ is served only
    there and routes only on the main one.
    """

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        # The router matches the decoded, normalised path (`/%2D/status`, `/x/../-/status` and absolute-form
        # targets reach /-/ handlers): admin checks must see what the router sees, not only the raw target.
        path = request.raw_path
        if not path.startswith(ADMIN_PREFIX) and request.path.startswith(ADMIN_PREFIX):
            path = request.path
        admin_path = path.startswith(ADMIN_PREFIX)
        if runtime.admin_port is not None:
            sockname = request.transport.get_extra_info("sockname") if request.transport else None
            on_admin = bool(sockname) and sockname[1] == runtime.admin_port
            if on_admin != admin_path:
                listener = "the admin listener" if on_admin else "this listener"
                return error_response(RouteNotFound(f"not served on {listener}"), request_id_from(request.headers))
        console = admin_path and is_console(request)
        # GET navigations from another site (a link in a wiki or chat): the login's, and the console's reads
        # (nothing a GET does changes state; its POSTs need the same origin and a CSRF token, console/session.py)
        login = admin_path and (path.startswith(LOGIN_PREFIX) or console) and request.method == "GET"
        own = f"{request.scheme}://{request.host}" if console else None  # the console's page posts to itself
        refused = runtime.guard.check(request.headers, navigation_ok=login, own_origin=own)
        if refused is not None:
            return error_response(refused, request_id_from(request.headers))
        if admin_path:
            if path not in OPEN_ADMIN_PATHS and not console and not runtime.gate.admin_allowed(request.headers):
                refusal = error_response(
                    Unauthorized(
                        "the admin endpoints need the admin key (admin.key): send it as a Bearer token, "
                        "or as the password when a browser asks"
                    ),
                    request_id_from(request.headers),
                )
                refusal.headers["WWW-Authenticate"] = 'Basic realm="authproxy admin", charset="UTF-8"'
                return refusal
        elif isinstance(request.match_info.route, SystemRoute):
            return await proxy(request)
        return await handler(request)

    return middleware
