"""Credentials: how a route gets the token it injects.

`build_credential(route, ...)` picks the grant's `TokenSource` (one module per grant) and
wraps it in a `Credential`, which does the caching, single flight, persistence and background
renewal for all of them. Config problems found here raise `ConfigError` at startup.
"""

from __future__ import annotations

import random

import aiohttp

from authproxy.clock import Clock
from authproxy.config_schema import RouteConfig
from authproxy.credentials.authorization_code import AuthorizationCodeSource, exchange_code
from authproxy.credentials.client_auth import basic_authorization, build_client_auth
from authproxy.credentials.client_credentials import ClientCredentialsSource
from authproxy.credentials.credential import Credential, store_key
from authproxy.credentials.endpoint import TokenEndpoint
from authproxy.credentials.refresh_token import RefreshTokenSource, login_hint
from authproxy.credentials.source import TokenSource
from authproxy.credentials.static import StaticSource
from authproxy.errors import ConfigError
from authproxy.refresher import Backoff
from authproxy.stores import TokenStore


def build_endpoint(route: RouteConfig, clock: Clock) -> TokenEndpoint:
    """The route's token endpoint (also what `authproxy login` uses to exchange a code)."""
    auth, where = route.auth, f"routes.{route.name}.auth"
    if not auth.token_url:
        raise ConfigError([(f"{where}.token_url", f"grant {auth.grant} needs a token_url")])
    return TokenEndpoint(auth, auth.token_url, build_client_auth(auth, auth.token_url, where=where), clock)


def build_source(route: RouteConfig, clock: Clock) -> TokenSource | None:
    """The grant's token source; None for grant `none`."""
    auth = route.auth
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
    return Credential(
        route.name, source, http=http, store=store, clock=clock, auth=route.auth, rng=rng, backoff=backoff
    )


__all__ = [
    "Backoff",
    "Credential",
    "TokenEndpoint",
    "TokenSource",
    "basic_authorization",
    "build_credential",
    "build_endpoint",
    "build_source",
    "exchange_code",
    "login_hint",
    "store_key",
]
