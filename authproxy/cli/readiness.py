"""Can each route work? The answer `check` and `status` print: ready, needs login, not configured, error.

Offline it is read from the config and the token store (nothing is contacted); `probe_token`
requests one token, the online half. Every piece of advice is a command or a variable the user
can act on, with the options they gave (`-c FILE`).
"""

from __future__ import annotations

import re
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from authproxy.config.schema import Config, RouteConfig
from authproxy.credentials.build import not_configured, unset_variables
from authproxy.credentials.credential import Credential
from authproxy.credentials.discovery import DiscoveryError, discover
from authproxy.credentials.identity import store_key
from authproxy.errors import AuthProxyError
from authproxy.login.routes import callback_path
from authproxy.shell import Invocation, shell_quote
from authproxy.stores.base import TokenStore
from authproxy.upstream.egress import EgressPolicy
from authproxy.upstream.transport import Transport

READY, NEEDS_LOGIN, NOT_CONFIGURED, ERROR = "ready", "needs login", "not configured", "error"
LOGIN_GRANTS = ("authorization_code",)
REQUESTING = ("client_credentials", "refresh_token", "authorization_code")  # grants that request tokens


@dataclass
class Probe:
    """One online check of a route (a token request; OIDC discovery may add its own)."""

    name: str
    ok: bool
    detail: str


@dataclass
class RouteReport:
    name: str
    prefix: str
    upstream: str
    grant: str
    state: str = READY
    detail: str = ""
    variables: list[str] = field(default_factory=list)  # to set, for `not configured`
    redirect_uris: dict[str, str] = field(default_factory=dict)  # what to register, by who listens there
    probes: list[Probe] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


async def assess(config: Config, store: TokenStore, invocation: Invocation) -> list[RouteReport]:
    """Every route's readiness from the config and the store, without contacting anything."""
    return [await assess_route(config, route, store, invocation) for route in config.routes.values()]


async def assess_route(config: Config, route: RouteConfig, store: TokenStore, invocation: Invocation) -> RouteReport:
    auth = route.auth
    report = RouteReport(route.name, route.prefix, route.upstream, auth.grant)
    if auth.grant in LOGIN_GRANTS:
        report.redirect_uris = redirect_uris(config, route)
    empty = not_configured(route)
    if empty:
        report.state, report.variables = NOT_CONFIGURED, unset_variables(route, empty)
        todo = ["set " + " ".join(f"{name}=..." for name in report.variables)] if report.variables else []
        unexplained = [key for key in empty if not unset_variables(route, [key])]
        if unexplained:
            todo.append("fill in " + ", ".join(unexplained))
        report.detail = "; ".join(todo)
        return report
    if auth.grant == "none":
        report.detail = "no credential injected"
    elif auth.grant in ("authorization_code", "refresh_token") and not auth.refresh_token:
        try:
            stored = await store.load(store_key(route.name))
        except OSError as exc:
            report.state, report.detail = ERROR, f"the token store failed: {exc.strerror or exc}"
            return report
        if stored is not None and (stored.refresh_token or stored.access_token):
            report.detail = f"logged in (tokens in {store.where()})"
        elif auth.grant == "refresh_token" and not auth.authorize_url:
            report.state, report.detail = ERROR, f"no refresh token: set routes.{route.name}.auth.refresh_token"
        else:
            report.state = NEEDS_LOGIN
            report.detail = invocation.command("login", route.name)
    return report


def redirect_uris(config: Config, route: RouteConfig) -> dict[str, str]:
    """The redirect URIs to register with the provider: the proxy's web login and `authproxy login`'s loopback."""
    own = callback_path(route.name)
    configured = route.auth.redirect_uri
    if configured and configured.endswith(own):
        return {"web login": configured}
    scheme = "https" if config.tls.cert_file else "http"
    uris = {"web login": f"{scheme}://{config.listen}{own}"}
    if configured:
        uris["authproxy login"] = configured
    return uris


async def probe_discovery(route: RouteConfig, transport: Transport, egress: EgressPolicy | None) -> Probe:
    """Fetch the route's `auth.issuer` metadata (as the proxy will) and say what it filled in and what the
    server does not support of what the route uses."""
    try:
        found = await discover(route, transport, egress)
    except DiscoveryError as err:
        return Probe("discovery", False, f"{err.message}; check routes.{route.name}.auth.issuer")
    filled = [f.key for f in found.findings if f.kind == "filled"]
    text = f"{found.url}: " + (f"filled {', '.join(filled)}" if filled else "every endpoint is set explicitly")
    warnings = [f.message for f in found.findings if f.kind == "unsupported"]
    if warnings:
        text += "; warning: " + "; ".join(warnings)
    return Probe("discovery", True, text)


async def probe_token(route: RouteConfig, credential: Credential | None, invocation: Invocation) -> Probe:
    """Request one new token for the route (saved like the proxy saves it) and say how it went."""
    if credential is None:
        return Probe("token", True, "no token needed")
    if route.auth.grant == "static":
        return Probe("token", True, "static token (nothing to request)")
    try:
        token = await credential.refresh()
    except AuthProxyError as err:
        return Probe("token", False, failure_text(route, credential, err, invocation))
    lifetime = "no expiry" if token.expires_at is None else f"valid {max(0, round(token.expires_at - time.time())):d} s"
    return Probe("token", True, f"got a token ({lifetime})")


def failure_text(route: RouteConfig, credential: Credential, err: AuthProxyError, invocation: Invocation) -> str:
    """One sentence for a failed token request: the provider's words, no retry talk, what to check."""
    status = credential.status()
    detail = getattr(err, "detail", None)  # a permanent refusal: its advice, then the provider's own words
    if detail:
        text = f"{err.message}; the provider said: {detail}"
    else:
        text = re.sub(r"; retrying in \d+s$", "", str(status.get("last_error_detail") or err.message))
    text = text.replace(f"authproxy login {route.name}", invocation.command("login", route.name))
    if "answered HTTP 404" in text:
        text += f"; check routes.{route.name}.auth.token_url ({route.auth.token_url})"
    elif "answered HTTP 401" in text or "invalid_client" in text:
        text += f"; check routes.{route.name}.auth.client_id and client_secret"
    return text


def quoted_uris(report: RouteReport) -> str:
    return ", ".join(f"{shell_quote(uri)} ({who})" for who, uri in report.redirect_uris.items())
