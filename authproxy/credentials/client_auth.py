"""How the client proves who it is to the token endpoint: a small registry of methods.

Each method checks the route's `AuthConfig` once (ConfigError at build time) and returns a
function that yields the extra headers and body parameters of one token request. Adding a
method means adding one builder to `METHODS`.
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import quote_plus

from authproxy.clock import Clock
from authproxy.config.schema import AuthConfig
from authproxy.credentials.assertion import ASSERTION_TYPE, build_signer
from authproxy.errors import ConfigError


@dataclass(slots=True)
class ClientAuthParts:
    """What one method adds to a token request; `secrets` are redacted from error texts."""

    headers: dict[str, str] = field(default_factory=dict)
    params: dict[str, str] = field(default_factory=dict)
    secrets: list[str] = field(default_factory=list)


ClientAuthMethod = Callable[[Clock], ClientAuthParts]
MethodBuilder = Callable[[AuthConfig, str, str], ClientAuthMethod]


def basic_authorization(client_id: str, client_secret: str) -> str:
    """RFC 6749 §2.3.1: form-urlencode id and secret, join with ':', base64 → Basic header value."""
    raw = f"{quote_plus(client_id)}:{quote_plus(client_secret)}".encode()
    return "Basic " + base64.b64encode(raw).decode("ascii")


# What each method needs from AuthConfig; a key that is present but empty means "not configured".
NEEDED: dict[str, tuple[str, ...]] = {
    "client_secret_basic": ("client_id", "client_secret"),
    "client_secret_post": ("client_id", "client_secret"),
    "none": ("client_id",),
    "private_key_jwt": ("client_id", "private_key"),
    "client_secret_jwt": ("client_id", "client_secret"),
}


def empty_settings(auth: AuthConfig) -> list[str]:
    """Keys the client auth method needs that are given but empty (`${VAR:-}` with VAR unset).

    Absent keys (None) are config errors found by the loader; empty ones let the route start
    but not serve, so an example config runs before every provider has credentials.
    """
    return [key for key in NEEDED.get(auth.client_auth, ()) if getattr(auth, key) == ""]


def _require(auth: AuthConfig, where: str, *, secret: bool) -> tuple[str, str]:
    empty = " (it is empty: set the environment variable or file it comes from)"
    if not auth.client_id:
        hint = empty if auth.client_id == "" else ""
        raise ConfigError([(f"{where}.client_id", f"client_auth {auth.client_auth} needs a client_id{hint}")])
    if secret and not auth.client_secret:
        hint = empty if auth.client_secret == "" else ""
        raise ConfigError([(f"{where}.client_secret", f"client_auth {auth.client_auth} needs a client_secret{hint}")])
    return auth.client_id, auth.client_secret or ""


def _basic(auth: AuthConfig, token_url: str, where: str) -> ClientAuthMethod:
    client_id, secret = _require(auth, where, secret=True)
    header = basic_authorization(client_id, secret)
    return lambda _clock: ClientAuthParts(headers={"Authorization": header}, secrets=[secret, header])


def _post(auth: AuthConfig, token_url: str, where: str) -> ClientAuthMethod:
    client_id, secret = _require(auth, where, secret=True)
    params = {"client_id": client_id, "client_secret": secret}
    return lambda _clock: ClientAuthParts(params=dict(params), secrets=[secret])


def _public(auth: AuthConfig, token_url: str, where: str) -> ClientAuthMethod:
    params = {"client_id": auth.client_id} if auth.client_id else {}
    return lambda _clock: ClientAuthParts(params=dict(params))


def _jwt(auth: AuthConfig, token_url: str, where: str) -> ClientAuthMethod:
    client_id, secret = _require(auth, where, secret=False)
    signer = build_signer(
        method=auth.client_auth,
        client_id=client_id,
        token_url=token_url,
        audience=auth.assertion_audience,
        private_key=auth.private_key,
        client_secret=auth.client_secret,
        key_id=auth.key_id,
        algorithm=auth.assertion_alg,
        where=where,
    )

    def apply(clock: Clock) -> ClientAuthParts:
        assertion = signer.sign(clock)
        return ClientAuthParts(
            params={"client_assertion_type": ASSERTION_TYPE, "client_assertion": assertion},
            secrets=[s for s in (secret, assertion) if s],
        )

    return apply


METHODS: dict[str, MethodBuilder] = {
    "client_secret_basic": _basic,
    "client_secret_post": _post,
    "none": _public,
    "private_key_jwt": _jwt,
    "client_secret_jwt": _jwt,
}


def build_client_auth(auth: AuthConfig, token_url: str, *, where: str = "auth") -> ClientAuthMethod:
    """Validate the route's client auth settings now (ConfigError) and return the method."""
    builder = METHODS.get(auth.client_auth)
    if builder is None:
        raise ConfigError(
            [(f"{where}.client_auth", f"unknown client_auth {auth.client_auth!r}; one of " + ", ".join(METHODS))]
        )
    return builder(auth, token_url, where)
