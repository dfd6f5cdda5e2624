"""Grant `static`: a fixed key from the config; it never expires and is never stored."""

from __future__ import annotations

from authproxy.credentials.tokens import Token


class StaticSource:
    persist = False  # the token is in the config already; don't copy a secret into the store

    def __init__(self, token: str, token_type: str | None) -> None:
        self._token = Token(access_token=token, expires_at=None, token_type=token_type or "Bearer")

    async def fetch(self, previous: Token | None) -> Token:
        return self._token

    def refresh_token_for(self, previous: Token | None) -> str | None:
        return None

    def relogin_hint(self) -> str | None:
        return None
