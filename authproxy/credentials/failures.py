"""What a failed token request means for clients: classification and the messages they see.

Messages name the route and the OAuth error and say what to do; they never hold a secret
(the endpoint's own text has already been redacted by `endpoint.py`).
"""

from __future__ import annotations

from authproxy.credentials.refresh_token import login_hint
from authproxy.errors import AuthProxyError, CredentialFailed, LoginRequired, TokenEndpointError, TokenUnavailable

ADVICE = {
    "invalid_client": "check client_id and client_secret (or the client's key)",
    "unauthorized_client": "this client may not use this grant; check the provider's app settings",
    "invalid_scope": "check auth.scope against the scopes this client may request",
    "invalid_grant": "the grant was rejected; check the credentials",
    "unsupported_grant_type": "the endpoint does not support this grant; check auth.grant",
}


def error_code(exc: TokenEndpointError) -> str:
    """A short stable code for `/-/status` and logs: the OAuth error, `http_502`, `unreachable`..."""
    if exc.oauth_error:
        return exc.oauth_error
    if exc.status is not None:
        return f"http_{exc.status}" if exc.status >= 300 else "invalid_response"
    return "unreachable"


def permanent_error(
    route: str, exc: TokenEndpointError, *, refresh_based: bool, hint: str | None = None
) -> AuthProxyError | None:
    """LoginRequired / CredentialFailed when a human must act; None when retrying may help.

    `hint`: what to do about a dead refresh token (the grant's own advice; a browser login by default).
    """
    if not exc.permanent:
        return None
    if exc.oauth_error == "invalid_grant" and refresh_based:
        message = f"the refresh token for route {route!r} was rejected (invalid_grant); {hint or login_hint(route)}"
        return LoginRequired(message, route=route)
    advice = ADVICE.get(exc.oauth_error or "", "check the route's auth settings")
    return CredentialFailed(f"the token endpoint refused route {route!r} ({exc.oauth_error}): {advice}", route=route)


def transient_error(route: str, exc: TokenEndpointError, delay: float) -> TokenUnavailable:
    return TokenUnavailable(
        f"cannot get a token for route {route!r}: {exc.message}; retrying in {delay:.0f}s",
        route=route,
        retry_after=delay,
    )


def unavailable(route: str, reason: str, retry_after: float = 1.0) -> TokenUnavailable:
    """No token right now, for a reason that is not the endpoint's answer (waiting, backoff)."""
    return TokenUnavailable(f"no token for route {route!r}: {reason}", route=route, retry_after=retry_after)
