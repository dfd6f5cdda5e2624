"""The authorization code flow, shared by `authproxy login` and the proxy's `/-/login/ROUTE`.

PKCE (RFC 7636, S256) and a random `state` per attempt, the authorize URL (with `audience`,
`scope` and `authorize_params`), reading the redirect (RFC 6749 §4.1.2), exchanging the code
with the route's client auth and saving the tokens, and revocation (RFC 7009). The callers own
the browser and the callback server. No message here ever holds the code, the verifier, a
token or a client secret.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import secrets
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, replace
from urllib.parse import parse_qsl, urlencode, urlsplit

from yarl import URL

from authproxy.clock import Clock
from authproxy.config.schema import RouteConfig
from authproxy.credentials.build import build_endpoint
from authproxy.credentials.client_auth import build_client_auth
from authproxy.credentials.discovery import DiscoveryCache, DiscoveryError, discover, needs_discovery
from authproxy.credentials.endpoint import TokenEndpoint
from authproxy.credentials.failures import ADVICE
from authproxy.credentials.grants.authorization_code import exchange_code
from authproxy.credentials.identity import store_key, token_identity
from authproxy.credentials.tokens import Token
from authproxy.errors import AuthProxyError, ConfigError, TokenEndpointError
from authproxy.stores.base import TokenStore
from authproxy.upstream.egress import EgressPolicy
from authproxy.upstream.pool import NativeTransport
from authproxy.upstream.transport import Transport


class LoginError(AuthProxyError):
    """A login that cannot complete; the message says why and what to do."""

    code, status = "login_failed", 400


class ExchangeFailed(LoginError):
    """The token endpoint did not turn the code into tokens."""

    status = 502


class SaveFailed(LoginError):
    """Tokens were obtained but the store refused them."""

    status = 500


@dataclass(frozen=True, slots=True)
class LoginAttempt:
    """One browser round trip: what the authorize request sent and the callback must match."""

    route: str
    state: str
    verifier: str
    redirect_uri: str
    url: str  # the authorize URL the browser opens

    def __repr__(self) -> str:  # the verifier must not reach a log line
        return f"LoginAttempt(route={self.route!r}, redirect_uri={self.redirect_uri!r})"


def pkce_pair() -> tuple[str, str]:
    """(code_verifier, S256 code_challenge): 64 unreserved characters and their hash."""
    verifier = secrets.token_urlsafe(48)
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return verifier, base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def check_login_route(route: RouteConfig) -> None:
    """Raise LoginError unless `route` can log in through a browser."""
    auth, where = route.auth, f"routes.{route.name}.auth"
    if auth.grant not in ("authorization_code", "refresh_token"):  # both renew from the refresh token saved
        raise LoginError(
            f"route {route.name!r} uses grant {auth.grant}; only authorization_code routes (and refresh_token routes "
            f"with an authorize_url) log in through a browser (set {where}.grant: authorization_code, or use a "
            "preset such as stockx)",
            route=route.name,
        )
    for key in ("authorize_url", "token_url", "client_id"):
        if not getattr(auth, key) and not (key.endswith("_url") and auth.issuer):  # else discovered first
            raise LoginError(f"{where}.{key} is not set; a login needs it", route=route.name)


async def resolve_cached(
    cache: DiscoveryCache, route: RouteConfig, transport: Transport, egress: EgressPolicy | None = None
) -> RouteConfig:
    """Like `resolve_route`, through a running proxy's cache of metadata documents."""
    try:
        return await cache.route(route, transport, egress)
    except DiscoveryError as exc:
        raise LoginError(f"{exc.message}; check routes.{route.name}.auth.issuer", route=route.name) from None


async def resolve_route(route: RouteConfig, transport: Transport, egress: EgressPolicy | None = None) -> RouteConfig:
    """`route` with the endpoints its `auth.issuer` publishes filled in (LoginError when that fails)."""
    if not needs_discovery(route):
        return route
    try:
        discovery = await discover(route, transport, egress)
    except DiscoveryError as exc:
        raise LoginError(f"{exc.message}; check routes.{route.name}.auth.issuer", route=route.name) from None
    return replace(route, auth=discovery.auth)


def new_attempt(route: RouteConfig, redirect_uri: str) -> LoginAttempt:
    """A fresh state and PKCE pair, and the authorize URL that carries them."""
    check_login_route(route)
    auth = route.auth
    if not auth.authorize_url:  # an issuer whose document has none
        raise LoginError(
            f"routes.{route.name}.auth.authorize_url is not set and the issuer's metadata has no "
            "authorization_endpoint; set it",
            route=route.name,
        )
    state = secrets.token_urlsafe(24)
    verifier, challenge = pkce_pair()
    params = {
        "response_type": "code",
        "client_id": auth.client_id or "",
        "redirect_uri": redirect_uri,
        "state": state,
        "code_challenge": challenge,
        "code_challenge_method": "S256",
    }
    if auth.scope:
        params["scope"] = auth.scope
    if auth.audience:
        params["audience"] = auth.audience
    params.update(auth.authorize_params)
    base = URL(auth.authorize_url or "")
    query = urlencode({**dict(base.query), **params})  # spaces as '+', as form encoding (and Auth0) expect
    url = str(base.with_query(None)) + "?" + query
    return LoginAttempt(route.name, state, verifier, redirect_uri, url)


def parse_redirect(text: str) -> dict[str, str]:
    """The query of a pasted redirect URL (or of a bare `?code=...&state=...`); {} if none."""
    text = text.strip()
    query = urlsplit(text).query if "://" in text else text.lstrip("?")
    if "#" in query:
        query = query.split("#", 1)[0]
    return dict(parse_qsl(query, keep_blank_values=True))


def is_callback(params: Mapping[str, str]) -> bool:
    """Does this look like the provider's redirect (a code or an error), not some other request?"""
    return "code" in params or "error" in params


def read_callback(params: Mapping[str, str], attempt: LoginAttempt) -> str:
    """The authorization code from the redirect; LoginError for a refusal or a wrong state."""
    again = f"run `authproxy login {attempt.route}` again"
    if params.get("state") != attempt.state:
        raise LoginError(
            "the redirect's state does not match this login (a stale browser tab, another login started "
            f"meanwhile, or a forged request); nothing was saved; {again} and finish it in the tab it opens",
            route=attempt.route,
        )
    error = params.get("error")
    if error:
        detail = _printable(params.get("error_description", ""))
        detail = f": {detail}" if detail else ""
        if error == "access_denied":
            raise LoginError(
                f"the login was denied at the provider (access_denied{detail}); {again} and approve the access",
                route=attempt.route,
            )
        raise LoginError(
            f"the provider refused the authorization ({_printable(error, 64)}{detail}); check client_id, "
            f"scope, and that {attempt.redirect_uri} is registered with the provider exactly as written",
            route=attempt.route,
        )
    code = params.get("code")
    if not code:
        raise LoginError(f"the redirect carries no authorization code; {again}", route=attempt.route)
    return code


async def complete_login(
    route: RouteConfig,
    attempt: LoginAttempt,
    code: str,
    *,
    transport: Transport,
    store: TokenStore,
    clock: Clock,
    egress: EgressPolicy | None = None,
) -> Token:
    """Exchange the code (with the route's client auth and the PKCE verifier) and save the tokens; `egress`: the
    route's egress proxy rules (None: direct)."""
    try:
        endpoint = build_endpoint(route, clock, transport, egress)
    except ConfigError as exc:
        raise LoginError("; ".join(f"{path}: {msg}" for path, msg in exc.problems), route=route.name) from None
    try:
        token = await exchange_code(
            endpoint, code=code, redirect_uri=attempt.redirect_uri, code_verifier=attempt.verifier
        )
    except TokenEndpointError as exc:
        advice = ADVICE.get(exc.oauth_error or "", "check the route's auth settings and the provider's status")
        if exc.oauth_error == "invalid_grant":
            advice = (
                f"codes are single-use and expire within minutes: run `authproxy login {route.name}` again; "
                f"if it persists, check that {attempt.redirect_uri} is the registered redirect URI"
            )
        raise ExchangeFailed(
            f"the code could not be exchanged for tokens: {exc.detail}; {advice}", route=route.name
        ) from None
    await save_login(route, token, store)
    return token


async def save_login(route: RouteConfig, token: Token, store: TokenStore) -> None:
    """Store a login's tokens where the route's credential (in this process or a running proxy) finds them."""
    key = store_key(route.name)
    try:
        async with store.lock(key):
            await store.save(key, replace(token, identity=token_identity(route.auth)))
    except OSError as exc:
        raise SaveFailed(
            f"logged in, but the tokens could not be saved: {exc}; fix the token store (store.path) and log in again",
            route=route.name,
        ) from None


async def revoke(
    route: RouteConfig, token: Token, *, transport: Transport, clock: Clock, egress: EgressPolicy | None = None
) -> str:
    """RFC 7009: revoke the refresh token (else the access token); returns which one was revoked."""
    auth, where = route.auth, f"routes.{route.name}.auth"
    url = auth.revocation_url or ""
    try:
        client_auth = build_client_auth(auth, url, where=where)
    except ConfigError as exc:
        raise LoginError("; ".join(f"{path}: {msg}" for path, msg in exc.problems), route=route.name) from None
    via = egress.choose(URL(url)).egress if egress is not None else None
    endpoint = TokenEndpoint(auth, url, client_auth, clock, transport, what="revocation endpoint", egress=via)
    parts = client_auth(clock)
    hint = "refresh_token" if token.refresh_token else "access_token"
    body = {"token": token.refresh_token or token.access_token, "token_type_hint": hint, **parts.params}
    headers = {"Accept": "application/json", "Content-Type": "application/x-www-form-urlencoded", **parts.headers}
    try:
        status, _, raw = await endpoint.post(urlencode(body).encode(), headers)
    except TokenEndpointError as exc:
        raise LoginError(exc.message, route=route.name) from None
    if status != 200:
        raise LoginError(f"the revocation endpoint answered HTTP {status}{_oauth_error(raw)}", route=route.name)
    return hint


def describe(token: Token, clock: Clock) -> str:
    """What a login obtained, without any secret: lifetime and whether a refresh token came."""
    life = (
        "" if token.expires_at is None else f"access token valid for {max(0, round(token.expires_at - clock.now()))}s"
    )
    refresh = "refresh token stored" if token.refresh_token else "no refresh token"
    granted = f"granted scope: {token.scope}" if token.scope else ""
    return ", ".join(p for p in (life, refresh, granted) if p)


def _oauth_error(raw: bytes) -> str:
    try:
        answer = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        return ""
    error = answer.get("error") if isinstance(answer, dict) else None
    return f" ({_printable(error, 64)})" if isinstance(error, str) and error else ""


def _printable(text: str, limit: int = 200) -> str:
    """Provider-supplied text, safe to print: no control characters, bounded length."""
    text = "".join(ch if ch.isprintable() else " " for ch in text).strip()
    return text if len(text) <= limit else text[:limit] + "…"


@contextlib.asynccontextmanager
async def command_transport(given: Transport | None) -> AsyncIterator[Transport]:
    """The caller's transport, or one of our own for one CLI command (closed after)."""
    if given is not None:
        yield given
        return
    own = NativeTransport(limit=4)
    try:
        yield own
    finally:
        await own.close()
