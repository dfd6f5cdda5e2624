"""RFC 7523 assertions: client assertions (`private_key_jwt`, `client_secret_jwt`) and grant
assertions (`grant: jwt_bearer`, service accounts).

PyJWT and cryptography are an optional extra (`pip install 'authproxy[jwt]'`), imported only
here and only when a route uses a signed assertion, so the core install works without them.
Keys are parsed once, at build time, so a bad key is a config error rather than a 503 later.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Any

from authproxy.clock import Clock
from authproxy.errors import ConfigError

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
ASSERTION_LIFETIME = 60.0
GRANT_ASSERTION_LIFETIME = 3600.0  # RFC 7523 grant assertions: an hour, Google's maximum (and its libraries')
EXTRA_HINT = "install the jwt extra: pip install 'authproxy[jwt]'"


def _import_jwt(where: str) -> Any:
    try:
        import jwt  # optional extra: imported lazily so the core install works without it
    except ImportError:
        what = "signed assertions (private_key_jwt, client_secret_jwt, grant jwt_bearer)"
        raise ConfigError([(where, f"{what} need PyJWT and cryptography; {EXTRA_HINT}")]) from None
    return jwt


@dataclass(frozen=True, slots=True)
class AssertionSigner:
    """Signs a fresh client assertion per token request (new `jti`, `iat` from the clock)."""

    client_id: str
    audience: str
    algorithm: str
    key: Any  # a cryptography private key, or the client secret bytes for HS*
    key_id: str | None
    subject: str | None = None  # `sub`; None: the issuer (client_id), as RFC 7523 §3 has clients do
    lifetime: float = ASSERTION_LIFETIME
    scope: str | None = None  # a grant assertion's `scope` claim (Google reads the scopes there)

    def sign(self, clock: Clock) -> str:
        jwt = _import_jwt("auth.client_auth")
        iat = int(clock.now())
        claims: dict[str, Any] = {
            "iss": self.client_id,
            "sub": self.subject or self.client_id,
            "aud": self.audience,
            "jti": secrets.token_urlsafe(24),
            "iat": iat,
            "exp": iat + int(self.lifetime),
        }
        if self.scope:
            claims["scope"] = self.scope
        headers = {"kid": self.key_id} if self.key_id else None
        return str(jwt.encode(claims, self.key, algorithm=self.algorithm, headers=headers))


def build_signer(
    *,
    method: str,
    client_id: str,
    token_url: str,
    audience: str | None,
    private_key: str | None,
    client_secret: str | None,
    key_id: str | None,
    algorithm: str | None,
    where: str,
) -> AssertionSigner:
    """Validate the key material for `method` and return a signer; raises ConfigError."""
    _import_jwt(f"{where}.client_auth")
    aud = audience or token_url
    if method == "client_secret_jwt":
        if not client_secret:
            raise ConfigError([(f"{where}.client_secret", "client_secret_jwt signs with the client secret; set it")])
        alg = algorithm or "HS256"
        if not alg.startswith("HS"):
            raise ConfigError([(f"{where}.assertion_alg", f"client_secret_jwt needs an HS* algorithm, not {alg}")])
        return _checked(AssertionSigner(client_id, aud, alg, client_secret.encode(), key_id), where)
    if not private_key:
        raise ConfigError([(f"{where}.private_key", "private_key_jwt needs a PEM private key (or private_key_file)")])
    key = _load_private_key(private_key, f"{where}.private_key")
    alg = algorithm or _default_algorithm(key, f"{where}.assertion_alg")
    return _checked(AssertionSigner(client_id, aud, alg, key, key_id), where)


def build_grant_signer(
    *,
    issuer: str,
    subject: str | None,
    audience: str,
    scope: str | None,
    private_key: str | None,
    key_id: str | None,
    algorithm: str | None,
    where: str,
) -> AssertionSigner:
    """The signer of RFC 7523 §2.1 grant assertions (`grant: jwt_bearer`); raises ConfigError.

    Signed with a private key only (RS256 for RSA, ES256 for P-256 unless `assertion_alg` says
    otherwise), valid for GRANT_ASSERTION_LIFETIME, the most Google accepts.
    """
    _import_jwt(f"{where}.grant")
    if not private_key:
        raise ConfigError([(f"{where}.private_key", "grant jwt_bearer needs a PEM private key (or private_key_file)")])
    key = _load_private_key(private_key, f"{where}.private_key")
    alg = algorithm or _default_algorithm(key, f"{where}.assertion_alg")
    if alg.startswith("HS"):
        raise ConfigError([(f"{where}.assertion_alg", f"grant jwt_bearer signs with the private key; not {alg}")])
    signer = AssertionSigner(issuer, audience, alg, key, key_id, subject, GRANT_ASSERTION_LIFETIME, scope)
    return _checked(signer, where)


def _checked(signer: AssertionSigner, where: str) -> AssertionSigner:
    """Sign once now: an algorithm PyJWT lacks or one that does not fit the key is a config error, not a 500 later."""
    from authproxy.clock import SystemClock

    jwt = _import_jwt(f"{where}.client_auth")
    try:
        signer.sign(SystemClock())
    except (NotImplementedError, TypeError, ValueError, jwt.PyJWTError) as exc:  # what PyJWT raises; never the key
        raise ConfigError(
            [(f"{where}.assertion_alg", f"{signer.algorithm} cannot sign with this key ({type(exc).__name__})")]
        ) from None
    return signer


def _load_private_key(pem: str, where: str) -> Any:
    from cryptography.hazmat.primitives import serialization

    try:
        return serialization.load_pem_private_key(pem.encode(), password=None)
    except (ValueError, TypeError) as exc:  # never echo the key itself
        raise ConfigError([(where, f"not a usable unencrypted PEM private key ({type(exc).__name__})")]) from None


def _default_algorithm(key: Any, where: str) -> str:
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

    if isinstance(key, rsa.RSAPrivateKey):
        return "RS256"
    if isinstance(key, ec.EllipticCurvePrivateKey):
        return {"secp256r1": "ES256", "secp384r1": "ES384", "secp521r1": "ES512"}.get(key.curve.name, "ES256")
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return "EdDSA"
    raise ConfigError([(where, "cannot pick an algorithm for this key type; set assertion_alg")])
