"""Credentials: how a route gets the token it injects.

`build_credential(route, ...)` picks the grant's `TokenSource` (one module per grant) and
wraps it in a `Credential`, which does the caching, single flight, persistence and background
renewal for all of them. Config problems found here raise `ConfigError` at startup.

A route whose credential settings are given but empty (`${VAR:-}` with VAR unset) is "not
configured": it starts, answers 503 `not_configured` naming the empty keys, and reports
`failed`, so an example config runs before every provider has credentials.
"""

from __future__ import annotations

import random

import aiohttp
import structlog

from authproxy.clock import Clock
from authproxy.config.schema import RouteConfig
from authproxy.credentials.client_auth import basic_authorization, build_client_auth, empty_settings
from authproxy.credentials.credential import Credential
from authproxy.credentials.endpoint import TokenEndpoint
from authproxy.credentials.grants.authorization_code import AuthorizationCodeSource, exchange_code
from authproxy.credentials.grants.base import TokenSource
from authproxy.credentials.grants.client_credentials import ClientCredentialsSource
from authproxy.credentials.grants.refresh_token import RefreshTokenSource, login_hint
from authproxy.credentials.grants.static import StaticSource
from authproxy.credentials.identity import store_key, token_identity
from authproxy.credentials.refresher import Backoff
from authproxy.credentials.tokens import Token
from authproxy.errors import ConfigError, NotConfigured, TokenEndpointError
from authproxy.stores.base import TokenStore

log = structlog.get_logger("authproxy.credentials")


def not_configured(route: RouteConfig) -> list[str]:
    """Key paths of the route's credential settings that are present but empty.

    Absent keys are config errors (the loader reports them); an empty one usually comes from
    `${VAR:-}` with VAR unset, so the route starts but does not serve until it is set.
    """
    auth = route.auth
    keys = [f"headers.{name}" for name, value in route.headers.items() if value == ""]
    if auth.grant == "static" and auth.token == "":
        keys.append("auth.token")
    elif auth.grant not in ("none", "static"):
        keys += [f"auth.{key}" for key in empty_settings(auth)]
    return [f"routes.{route.name}.{key}" for key in keys]


class UnconfiguredSource:
    """Stands in for the grant's source while settings are empty; never talks to anyone."""

    uses_refresh_token = False
    persist = False

    def __init__(self, route: RouteConfig, keys: list[str]) -> None:
        self.keys = keys
        listed = keys[0] if len(keys) == 1 else ", ".join(keys[:-1]) + " and " + keys[-1]
        self.message = (
            f"route {route.name!r} is not configured: {listed} {'is' if len(keys) == 1 else 'are'} empty "
            "(an unset environment variable, or an empty _file?); set "
            f"{'it' if len(keys) == 1 else 'them'} and restart authproxy"
        )

    async def fetch(self, http: aiohttp.ClientSession, previous: Token | None) -> Token:
        raise TokenEndpointError(self.message, oauth_error="not_configured", permanent=True)

    def refresh_token_for(self, previous: Token | None) -> str | None:
        return None


class NotConfiguredCredential(Credential):
    """A route that starts but cannot serve: every request gets 503 `not_configured`, status `failed`."""

    source: UnconfiguredSource

    def start(self) -> None:
        """Nothing to renew; say once, at startup, what to set."""
        log.warning("route_not_configured", route=self.name, empty=self.source.keys, detail=self.source.message)

    async def current(self) -> Token:
        raise NotConfigured(self.source.message, route=self.name)

    async def refresh(self, stale: Token | None = None) -> Token:
        raise NotConfigured(self.source.message, route=self.name)

    def status(self) -> dict[str, object]:
        status = super().status()
        status.update(
            state="failed",
            valid=False,
            last_outcome="failed",
            last_error_code="not_configured",
            message=self.source.message,
        )
        return status


def build_endpoint(route: RouteConfig, clock: Clock) -> TokenEndpoint:
    """The route's token endpoint (also what `authproxy login` uses to exchange a code)."""
    auth, where = route.auth, f"routes.{route.name}.auth"
    if not auth.token_url:
        raise ConfigError([(f"{where}.token_url", f"grant {auth.grant} needs a token_url")])
    return TokenEndpoint(auth, auth.token_url, build_client_auth(auth, auth.token_url, where=where), clock)


def build_source(route: RouteConfig, clock: Clock) -> TokenSource | None:
    """The grant's token source; None for grant `none`; `UnconfiguredSource` when settings are empty."""
    auth = route.auth
    empty = not_configured(route)
    if empty:
        return UnconfiguredSource(route, empty)
    if auth.grant == "none":
        return None
    if auth.grant == "static":
        if not auth.token:
            raise ConfigError([(f"routes.{route.name}.auth.token", "grant static needs a token (or token_file)")])
        return StaticSource(auth.token, auth.token_type)
    endpoint = build_endpoint(route, clock)
    if auth.grant == "client_credentials":
        return ClientCredentialsSource(endpoint)
    if auth.grant == "refresh_token":
        return RefreshTokenSource(endpoint, route.name, auth.refresh_token)
    if auth.grant == "authorization_code":
        return AuthorizationCodeSource(endpoint, route.name, auth.refresh_token)
    raise ConfigError([(f"routes.{route.name}.auth.grant", f"unknown grant {auth.grant!r}")])


def build_credential(
    route: RouteConfig,
    *,
    http: aiohttp.ClientSession,
    store: TokenStore,
    clock: Clock,
    rng: random.Random | None = None,
    backoff: Backoff | None = None,
) -> Credential | None:
    """The route's credential (None for grant `none`); `http` is the token-endpoint session."""
    source = build_source(route, clock)
    if source is None:
        return None
    if isinstance(source, UnconfiguredSource):
        return NotConfiguredCredential(route.name, source, http=http, store=store, clock=clock, auth=route.auth)
    return Credential(
        route.name, source, http=http, store=store, clock=clock, auth=route.auth, rng=rng, backoff=backoff
    )


__all__ = [
    "Backoff",
    "Credential",
    "NotConfiguredCredential",
    "TokenEndpoint",
    "TokenSource",
    "basic_authorization",
    "build_credential",
    "build_endpoint",
    "build_source",
    "exchange_code",
    "login_hint",
    "not_configured",
    "store_key",
    "token_identity",
]
