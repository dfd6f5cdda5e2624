"""`build_credential(route, ...)`: the grant's `TokenSource` wrapped in a `Credential`.

One module per grant (`grants/`) says how tokens are fetched; the `Credential` does the caching,
single flight, persistence and background renewal for all of them. Config problems found here
raise `ConfigError` when the app is built (so `authproxy check` finds them too).

A route whose credential settings are given but empty (`${VAR:-}` with VAR unset) is "not
configured": it starts, answers 503 `not_configured` naming the empty keys, and reports the state
`not_configured`, so an example config runs before every provider has credentials.
"""

from __future__ import annotations

import random

from yarl import URL

from authproxy.clock import Clock
from authproxy.config.schema import RouteConfig
from authproxy.credentials.assertion import AssertionSigner, build_grant_signer
from authproxy.credentials.client_auth import build_client_auth, empty_settings
from authproxy.credentials.credential import Credential
from authproxy.credentials.discovered import DiscoveredEndpoint
from authproxy.credentials.discovery import DiscoveryCache, needs_discovery
from authproxy.credentials.endpoint import TokenEndpoint
from authproxy.credentials.grants.authorization_code import AuthorizationCodeSource
from authproxy.credentials.grants.base import TokenSource
from authproxy.credentials.grants.client_credentials import ClientCredentialsSource
from authproxy.credentials.grants.jwt_bearer import JwtBearerSource
from authproxy.credentials.grants.refresh_token import RefreshTokenSource
from authproxy.credentials.grants.static import StaticSource
from authproxy.credentials.grants.token_exchange import TokenExchangeSource
from authproxy.credentials.identity import store_key, token_identity
from authproxy.credentials.refresher import Backoff
from authproxy.credentials.sync import NoStore, StoreSync
from authproxy.credentials.tokens import Token
from authproxy.errors import ConfigError, NotConfigured
from authproxy.stores.base import TokenStore
from authproxy.upstream.egress import EgressPolicy
from authproxy.upstream.tls import TlsSettings
from authproxy.upstream.transport import Transport


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
        if auth.grant == "jwt_bearer" and auth.private_key == "" and "auth.private_key" not in keys:
            keys.append("auth.private_key")
    return [f"routes.{route.name}.{key}" for key in keys]


def not_configured_error(route: RouteConfig, keys: list[str]) -> NotConfigured:
    listed = keys[0] if len(keys) == 1 else ", ".join(keys[:-1]) + " and " + keys[-1]
    variables = unset_variables(route, keys)
    if variables:  # what to do, in the user's terms: the variables behind `${VAR:-}`
        todo = "set " + " ".join(f"{name}=..." for name in variables) + " in the environment (export, or an .env file)"
        others = len(variables) < len(keys)
        return NotConfigured(
            f"route {route.name!r} is not configured: {listed} {'is' if len(keys) == 1 else 'are'} empty; "
            f"{todo}{' and fill in the other keys' if others else ''}, then restart authproxy",
            route=route.name,
        )
    return NotConfigured(
        f"route {route.name!r} is not configured: {listed} {'is' if len(keys) == 1 else 'are'} empty "
        "(an unset environment variable, or an empty _file?); set "
        f"{'it' if len(keys) == 1 else 'them'} and restart authproxy",
        route=route.name,
    )


def unset_variables(route: RouteConfig, keys: list[str]) -> list[str]:
    """The environment variables behind the empty `keys` (as `not_configured` names them), in order."""
    names: dict[str, None] = {}
    for key in keys:
        for name in route.env_vars.get(key.removeprefix(f"routes.{route.name}."), "").split():
            names[name] = None
    return list(names)


def build_endpoint(
    route: RouteConfig, clock: Clock, transport: Transport, egress: EgressPolicy | None = None
) -> TokenEndpoint:
    """The route's token endpoint (also what `authproxy login` uses to exchange a code); `egress`: the route's
    egress proxy rules (None: direct)."""
    auth, where = route.auth, f"routes.{route.name}.auth"
    if not auth.token_url:
        raise ConfigError([(f"{where}.token_url", f"grant {auth.grant} needs a token_url")])
    client_auth = build_client_auth(auth, auth.token_url, where=where)
    # A token endpoint on the upstream's own origin (`token_url: /o/token/`) is the same server: the
    # route's TLS settings (a private CA, a client certificate) apply to it; any other host gets the
    # system's CAs, since a route's CA file would refuse a public identity provider.
    same_origin = URL(auth.token_url).origin() == URL(route.upstream).origin()
    tls = TlsSettings.from_config(route.tls, f"routes.{route.name}.tls") if same_origin else None
    via = egress.choose(URL(auth.token_url)).egress if egress is not None else None
    return TokenEndpoint(auth, auth.token_url, client_auth, clock, transport, tls=tls, egress=via)


def build_source(
    route: RouteConfig,
    clock: Clock,
    transport: Transport,
    egress: EgressPolicy | None = None,
    *,
    config_path: str | None = None,
    discovery: DiscoveryCache | None = None,
) -> TokenSource | None:
    """The grant's token source; None for grant `none`. Raises ConfigError for unusable settings.

    `config_path`: the `-c FILE` the process was started with, repeated in "run: authproxy login" advice.
    With `auth.issuer` and endpoints left to discover, the endpoint is resolved before the first token
    request (through `discovery`, the app's cache); the client auth settings are checked now all the same.
    """
    auth = route.auth
    if auth.grant == "none":
        return None
    if auth.grant == "static":
        if not auth.token:
            raise ConfigError([(f"routes.{route.name}.auth.token", "grant static needs a token (or token_file)")])
        return StaticSource(auth.token, auth.token_type)
    endpoint: TokenEndpoint | DiscoveredEndpoint
    if needs_discovery(route):
        build_client_auth(auth, auth.token_url or auth.issuer or "", where=f"routes.{route.name}.auth")
        endpoint = DiscoveredEndpoint(
            route,
            discovery or DiscoveryCache(),
            transport,
            lambda resolved: build_endpoint(resolved, clock, transport, egress),
            egress=egress,
        )
    else:
        endpoint = build_endpoint(route, clock, transport, egress)
    if auth.grant == "client_credentials":
        return ClientCredentialsSource(endpoint)
    if auth.grant == "refresh_token":
        return RefreshTokenSource(endpoint, route.name, auth.refresh_token, config_path=config_path)
    if auth.grant == "authorization_code":
        return AuthorizationCodeSource(endpoint, route.name, auth.refresh_token, config_path=config_path)
    if auth.grant == "jwt_bearer":
        return JwtBearerSource(endpoint, _grant_signer(route, auth.token_url or auth.issuer or ""))
    if auth.grant == "token_exchange":
        return TokenExchangeSource(endpoint, auth, f"routes.{route.name}.auth")
    raise ConfigError([(f"routes.{route.name}.auth.grant", f"unknown grant {auth.grant!r}")])


def _grant_signer(route: RouteConfig, token_url: str) -> AssertionSigner:
    auth, where = route.auth, f"routes.{route.name}.auth"
    issuer = auth.assertion_issuer or auth.client_id
    if not issuer:
        raise ConfigError([(f"{where}.assertion_issuer", "grant jwt_bearer needs assertion_issuer or client_id")])
    return build_grant_signer(
        issuer=issuer,
        subject=auth.assertion_subject,
        audience=auth.assertion_audience or token_url,
        scope=auth.scope,
        private_key=auth.private_key,
        key_id=auth.key_id,
        algorithm=auth.assertion_alg,
        where=where,
    )


def build_credential(
    route: RouteConfig,
    *,
    transport: Transport,
    store: TokenStore,
    clock: Clock,
    rng: random.Random | None = None,
    backoff: Backoff | None = None,
    config_path: str | None = None,
    egress: EgressPolicy | None = None,
    discovery: DiscoveryCache | None = None,
) -> Credential | None:
    """The route's credential (None for grant `none`), not started; `transport` carries its token requests."""
    auth = route.auth
    empty = not_configured(route)
    if empty:  # even for grant none: an empty header the route injects (x-api-key) must not go out
        parked = not_configured_error(route, empty)
        return Credential(route.name, _Unconfigured(), NoStore(), clock=clock, parked=parked)
    source = build_source(route, clock, transport, egress, config_path=config_path, discovery=discovery)
    if source is None:
        return None
    sync: StoreSync | NoStore = NoStore()
    if source.persist:
        sync = StoreSync(route.name, store, store_key(route.name), token_identity(auth), clock)
    return Credential(
        route.name,
        source,
        sync,
        clock=clock,
        max_wait=auth.max_wait,
        min_leeway=auth.min_leeway,
        token_type=auth.token_type,
        scope=auth.scope,
        rng=rng,
        backoff=backoff,
    )


class _Unconfigured:
    """The source of a not-configured credential: never asked for anything (the credential stays parked)."""

    persist = False

    async def fetch(self, previous: Token | None) -> Token:
        raise AssertionError("a not-configured credential never requests a token")

    def refresh_token_for(self, previous: Token | None) -> str | None:
        return None

    def relogin_hint(self) -> str | None:
        return None
