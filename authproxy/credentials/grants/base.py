"""The `TokenSource` protocol: one per grant; talks to the token endpoint, never caches."""

from __future__ import annotations

from typing import Protocol

import aiohttp

from authproxy.credentials.tokens import Token


class TokenSource(Protocol):
    # True when tokens come from a refresh token: `invalid_grant` then means "log in again"
    # and the store is re-read in case another process rotated it first.
    uses_refresh_token: bool
    # False for tokens that come from the config (static): never written to the store.
    persist: bool

    async def fetch(self, http: aiohttp.ClientSession, previous: Token | None) -> Token:
        """A new token; raise TokenEndpointError (classified) or LoginRequired."""

    def refresh_token_for(self, previous: Token | None) -> str | None:
        """The refresh token `fetch(previous)` would send (None when the grant uses none)."""
