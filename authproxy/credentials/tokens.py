"""The token value object shared by credentials, stores and the proxy, and its stored form."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class Token:
    access_token: str
    expires_at: float | None  # epoch seconds; None: does not expire (static key)
    refresh_token: str | None = None
    token_type: str = "Bearer"
    obtained_at: float | None = None  # when the request that produced it was sent
    # Which client, endpoint and scope obtained it (credentials.identity); None: stored by an older version.
    identity: str | None = None
    scope: str | None = None  # the scope the endpoint says it granted; None: it did not say (RFC 6749 §5.1)

    def __repr__(self) -> str:  # never let a token reach a log line through repr()
        refresh = "yes" if self.refresh_token else "no"
        return f"Token(type={self.token_type!r}, expires_at={self.expires_at!r}, refresh={refresh})"

    def expired(self, now: float) -> bool:
        return self.expires_at is not None and now >= self.expires_at


def token_entry(token: Token) -> dict[str, Any]:
    """The JSON-able form persistent stores (file, redis) keep: one format for every backend."""
    return {
        "access_token": token.access_token,
        "expires_at": token.expires_at,
        "refresh_token": token.refresh_token,
        "token_type": token.token_type,
        "obtained_at": token.obtained_at,
        "identity": token.identity,
        "scope": token.scope,
    }


def token_from_entry(entry: Any) -> Token:
    """The token in a stored entry; TypeError when the entry is not one `token_entry` wrote."""
    if not isinstance(entry, dict) or not isinstance(entry.get("access_token"), str):
        raise TypeError("not a token entry")
    return Token(
        access_token=entry["access_token"],
        expires_at=_number(entry.get("expires_at")),
        refresh_token=_text(entry.get("refresh_token")),
        token_type=_text(entry.get("token_type")) or "Bearer",
        obtained_at=_number(entry.get("obtained_at")),
        identity=_text(entry.get("identity")),
        scope=_text(entry.get("scope")),
    )


def _number(value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError("not a number")
    return float(value)


def _text(value: Any) -> str | None:
    if value is None or isinstance(value, str):
        return value
    raise TypeError("not a string")
