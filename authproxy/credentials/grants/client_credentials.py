"""Grant `client_credentials` (RFC 6749 §4.4): the client's own identity buys the token."""

from __future__ import annotations

from authproxy.credentials.grants.base import TokenRequester
from authproxy.credentials.tokens import Token


class ClientCredentialsSource:
    persist = True

    def __init__(self, endpoint: TokenRequester) -> None:
        self._endpoint = endpoint

    async def fetch(self, previous: Token | None) -> Token:
        return await self._endpoint.request("client_credentials", {})

    def refresh_token_for(self, previous: Token | None) -> str | None:
        return None

    def relogin_hint(self) -> str | None:
        return None
