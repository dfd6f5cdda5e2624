"""Grant `authorization_code`, refresh side: renew with the refresh token `authproxy login` saved.

The browser half (authorize URL, PKCE, code exchange) runs in `authproxy login`; it stores the
resulting token under `store_key(route)`, where this source picks the refresh token up.
`exchange_code` is the code-for-token request that command can use.
"""

from __future__ import annotations

from authproxy.credentials.endpoint import TokenEndpoint
from authproxy.credentials.grants.refresh_token import RefreshTokenSource, login_hint
from authproxy.credentials.tokens import Token


class AuthorizationCodeSource(RefreshTokenSource):
    """Like `refresh_token`, but with nothing stored the only way forward is a login."""

    def missing_message(self) -> str:
        hint = login_hint(self._route, self._config_path)
        return f"route {self._route!r} is not logged in (no refresh token stored); {hint}"

    def relogin_hint(self) -> str | None:
        return login_hint(self._route, self._config_path)


async def exchange_code(
    endpoint: TokenEndpoint,
    *,
    code: str,
    redirect_uri: str | None,
    code_verifier: str | None = None,
) -> Token:
    """RFC 6749 §4.1.3 (+ RFC 7636 PKCE): trade an authorization code for the first tokens."""
    params = {"code": code}
    if redirect_uri:
        params["redirect_uri"] = redirect_uri
    if code_verifier:
        params["code_verifier"] = code_verifier
    return await endpoint.request("authorization_code", params)
