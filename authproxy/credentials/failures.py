"""What a failed token request means for clients: classification, the messages they see, and when a
refused token may not be renewed again.

Messages name the route and the OAuth error and say what to do; they never hold a secret
(the endpoint's own text has already been redacted by `endpoint.py`).
"""

from __future__ import annotations

import structlog

from authproxy.clock import Clock
from authproxy.credentials.tokens import Token
from authproxy.errors import AuthProxyError, CredentialFailed, LoginRequired, TokenEndpointError, TokenUnavailable

log = structlog.get_logger("authproxy.credentials")

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


def permanent_error(route: str, exc: TokenEndpointError, *, relogin_hint: str | None) -> AuthProxyError | None:
    """LoginRequired / CredentialFailed when a human must act; None when retrying may help.

    `relogin_hint`: what to do about a dead refresh token (the grant's own advice); None for grants
    that use no refresh token, where `invalid_grant` is an ordinary permanent failure.
    """
    if not exc.permanent:
        return None
    if exc.oauth_error == "invalid_grant" and relogin_hint is not None:
        message = f"the refresh token for route {route!r} was rejected (invalid_grant); {relogin_hint}"
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


REJECTED_HOLD = 30.0  # seconds before a token refused right after a renewal may be renewed on a 401 again


class RefusedAfterRenewal:
    """A token the upstream refused right after a 401-driven renewal.

    Then the token is not what the upstream objects to (a wrong API key, 401 used for "forbidden"):
    renewing on each of its 401s would send one token request per client request, so renewals of
    that token wait REJECTED_HOLD seconds.
    """

    def __init__(self, route: str, clock: Clock) -> None:
        self._route, self._clock = route, clock
        self._held: tuple[str, float] | None = None  # (access token, monotonic time it was refused)

    def note(self, token: Token) -> None:
        if self._held is None or self._held[0] != token.access_token:
            log.warning(
                "token_rejected_after_renewal",
                route=self._route,
                detail=f"the upstream refused a fresh token too; its 401s renew it again after {REJECTED_HOLD:g}s",
            )
        self._held = (token.access_token, self._clock.monotonic())

    def holds(self, token: Token) -> bool:
        held = self._held
        return held is not None and held[0] == token.access_token and self._clock.monotonic() - held[1] < REJECTED_HOLD
