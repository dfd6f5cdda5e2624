"""Who is looking at the console, and whether a POST really comes from the console's own page.

Viewers: with no admin key and no team, whoever can reach the loopback proxy (as for /-/status);
otherwise the admin key (everything, actions too) or a member's proxy key (a read-only view of its
own routes and requests). Browsers send either as the password of a Basic prompt.

Actions are POSTs guarded twice: the browser's own word (`Origin` must be this proxy's origin,
`Sec-Fetch-Site` same-origin) and a per-session CSRF token: an HttpOnly, SameSite=Strict session
cookie, and an HMAC of it under a per-process secret that only the console's page carries.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass

from aiohttp import web

from authproxy.errors import CrossSiteRefused, Forbidden, Unauthorized
from authproxy.proxy.access import Client, presented_key
from authproxy.server.runtime import RUNTIME

COOKIE = "authproxy_console"
CSRF_HEADER = "X-CSRF-Token"
BASIC_CHALLENGE = 'Basic realm="authproxy admin", charset="UTF-8"'


@dataclass(frozen=True, slots=True)
class Viewer:
    admin: bool  # may act (log in, renew, log out, Try it) and see every route
    client: Client | None = None  # a member key: only its own routes and requests

    def may_see(self, route: str) -> bool:
        return self.client is None or self.client.may_use(route)

    @property
    def name(self) -> str:
        return "admin" if self.client is None else self.client.name


class Sessions:
    """The per-process secret the CSRF tokens are derived from (a restart ends every console session)."""

    def __init__(self) -> None:
        self._secret = secrets.token_bytes(32)

    def csrf(self, session: str) -> str:
        return hmac.new(self._secret, session.encode(), hashlib.sha256).hexdigest()

    def session_of(self, request: web.Request, response: web.StreamResponse) -> str:
        """The request's session cookie, or a new one set on `response`."""
        session = request.cookies.get(COOKIE)
        if not session or len(session) > 64:
            session = secrets.token_urlsafe(24)
            response.set_cookie(COOKIE, session, path="/-/", httponly=True, samesite="Strict")
        return session

    def check_post(self, request: web.Request) -> None:
        """403 unless the POST comes from this proxy's own console page in this browser session."""
        own = f"{request.scheme}://{request.host}"
        origin = request.headers.get("Origin")
        if origin is not None and origin != own:
            raise CrossSiteRefused(f"console actions are accepted only from the console's own page ({own}/-/)")
        if request.headers.get("Sec-Fetch-Site", "same-origin") not in ("same-origin", "none"):
            raise CrossSiteRefused("console actions are accepted only from the console's own page (Sec-Fetch-Site)")
        session = request.cookies.get(COOKIE, "")
        token = request.headers.get(CSRF_HEADER, "")
        if not session or not hmac.compare_digest(token.encode(), self.csrf(session).encode()):
            raise CrossSiteRefused(f"missing or stale {CSRF_HEADER}: reload the console at {own}/-/ and try again")


SESSIONS = web.AppKey("console_sessions", Sessions)


def viewer(request: web.Request) -> Viewer:
    """The console's viewer, or 401 (with a Basic challenge, so a browser asks for the key)."""
    gate = request.app[RUNTIME].gate
    if gate.admin_allowed(request.headers):
        return Viewer(admin=True)
    key, _ = presented_key(request.headers)
    if key is not None and gate.team:
        try:
            client, _ = gate.identify(request.headers)
        except Unauthorized:
            pass
        else:
            return Viewer(admin=False, client=client)
    raise Unauthorized(
        "the console needs the admin key (admin.key), or your proxy key for a read-only view: "
        "a browser asks for it (any user name, the key as the password)"
    )


def admin_only(who: Viewer) -> None:
    if not who.admin:
        raise Forbidden("a member key has a read-only view: actions need the admin key (admin.key)")
