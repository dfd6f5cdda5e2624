"""Grant `refresh_token` (RFC 6749 §6): trade a long-lived refresh token for access tokens.

The refresh token comes from the store when one is saved there (a rotated one is newer than
the config's), else from `auth.refresh_token`. A rotated refresh token in the answer replaces
the old one; an answer without one keeps the old one.
"""

from __future__ import annotations

from authproxy.credentials.grants.base import TokenRequester
from authproxy.credentials.tokens import Token
from authproxy.errors import LoginRequired
from authproxy.shell import Invocation


def login_hint(route: str, config_path: str | None = None) -> str:
    """The sentence every "log in again" message ends with, with the `-c FILE` the proxy was started with."""
    return "run: " + Invocation(config=config_path).command("login", route)


class RefreshTokenSource:
    persist = True

    def __init__(
        self, endpoint: TokenRequester, route: str, configured: str | None, *, config_path: str | None = None
    ) -> None:
        self._endpoint = endpoint
        self._route = route
        self._configured = configured
        self._config_path = Invocation.of_path(config_path)  # repeated in "run: authproxy login -c FILE ROUTE"

    def refresh_token_for(self, previous: Token | None) -> str | None:
        if previous is not None and previous.refresh_token:
            return previous.refresh_token
        return self._configured

    async def fetch(self, previous: Token | None) -> Token:
        refresh = self.refresh_token_for(previous)
        if not refresh:
            raise LoginRequired(self.missing_message(), route=self._route)
        return await self._endpoint.request("refresh_token", {"refresh_token": refresh}, previous_refresh=refresh)

    def missing_message(self) -> str:
        return f"route {self._route!r} has no refresh token; set auth.refresh_token"

    def relogin_hint(self) -> str | None:
        """What a human does when the refresh token is dead (a browser login needs an authorize_url here)."""
        hint = login_hint(self._route, self._config_path)
        return f"set a new auth.refresh_token and reload, or {hint} (needs auth.authorize_url)"
