"""Which stored token belongs to which route: the store key and the credential's identity.

A token is stored under its route's name, so the same key survives edits to the config. A token
obtained for another client, token endpoint (or issuer), scope or audience must not be reused after such an
edit (it would call the upstream as someone else, or with other rights), so each saved token
carries a fingerprint of what obtained it; a new client secret keeps the fingerprint (and the
token). Hot reload compares the same fields (`reload.py`); a restart compares the fingerprint.
"""

from __future__ import annotations

import hashlib
import json

from authproxy.config.schema import AuthConfig
from authproxy.credentials.tokens import Token


def store_key(route: str) -> str:
    """The key a route's token is stored under (shared with `authproxy login`/`logout`)."""
    return f"route:{route}"


def identity_fields(auth: AuthConfig) -> tuple[object, ...]:
    """What a stored token belongs to: a new secret keeps the token, a new client or scope does not.

    A new `auth.refresh_token` starts a new chain too (the stored, rotated one descends from the old).
    """
    seed = hashlib.sha256(auth.refresh_token.encode()).hexdigest() if auth.refresh_token else None
    fields: tuple[object, ...] = (
        auth.grant,
        # with an issuer, it names the server (its token_url may be discovered, so is not known before)
        f"issuer:{auth.issuer}" if auth.issuer else auth.token_url,
        auth.client_id,
        auth.scope,
        auth.audience,
        sorted(auth.extra_params.items()),
        seed,
    )
    if auth.grant in ("jwt_bearer", "token_exchange"):  # appended only here: older grants keep their fingerprints
        fields += (
            auth.assertion_issuer,
            auth.assertion_subject,
            auth.subject_token_file,
            auth.actor_token_file,
            auth.resource,
            auth.requested_token_type,
        )
    return fields


def token_identity(auth: AuthConfig) -> str:
    """A short fingerprint of `identity_fields`, saved with each token (not reversible to a value)."""
    text = json.dumps(identity_fields(auth), separators=(",", ":"))
    return "v1:" + hashlib.sha256(text.encode()).hexdigest()[:24]


def belongs_to(token: Token, identity: str) -> bool:
    """True when `token` was obtained by the credential with `identity` (or predates fingerprints)."""
    return token.identity is None or token.identity == identity
