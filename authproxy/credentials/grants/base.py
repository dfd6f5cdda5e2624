"""The `TokenSource` protocol: what a grant is. One class per grant; none of them caches or stores.

A grant says how it fetches a token and what it spends doing so; everything else (caching, single
flight, persistence, renewal, failure handling) is the credential's, written once for all grants.
Whether a grant's tokens are stored at all is decided when the credential is built (`persist`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

from authproxy.credentials.tokens import Token


class TokenRequester(Protocol):
    """What a grant sends its token requests through: a `TokenEndpoint`, or one resolved from `auth.issuer`."""

    async def request(
        self, grant_type: str, params: Mapping[str, str], *, previous_refresh: str | None = None
    ) -> Token: ...


class TokenSource(Protocol):
    persist: bool  # False for tokens from the config (static): never copied into the store

    async def fetch(self, previous: Token | None) -> Token:
        """A new token; raise TokenEndpointError (already classified) or LoginRequired."""

    def refresh_token_for(self, previous: Token | None) -> str | None:
        """The refresh token `fetch(previous)` would spend, None when the grant spends none.

        When it spends one, an `invalid_grant` answer may mean another process rotated it first
        (the credential then re-reads the store) or that a human must log in again."""

    def relogin_hint(self) -> str | None:
        """What a human does when the refresh token is dead; None for grants that have none."""
