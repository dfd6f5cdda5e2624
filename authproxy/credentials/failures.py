"""What a failed token request means: classification, the policy that decides when to try again, the
messages clients see, and the hold on renewing a token the upstream refused right after a renewal.

Messages name the route and the OAuth error and say what to do; they never hold a secret
(the endpoint's own text has already been redacted by `endpoint.py`).
"""

from __future__ import annotations

import random

import structlog

from authproxy.clock import Clock
from authproxy.credentials.refresher import Backoff
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
    if exc.code:
        return exc.code
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
        return LoginRequired(message, route=route, detail=exc.description)
    advice = ADVICE.get(exc.oauth_error or "", "check the route's auth settings")
    return CredentialFailed(
        f"the token endpoint refused route {route!r} ({exc.oauth_error}): {advice}", route=route, detail=exc.description
    )


def unavailable(route: str, reason: str, retry_after: float = 1.0) -> TokenUnavailable:
    """No token right now, for a reason that is not the endpoint's answer (waiting, backoff)."""
    return TokenUnavailable(f"no token for route {route!r}: {reason}", route=route, retry_after=retry_after)


class FailurePolicy:
    """When the next token request may go out after failures, and what callers are told meanwhile.

    Transient failures back off exponentially (with jitter, from an injected random source);
    a permanent one parks the credential with its error: `login_required` until a new login, or
    `failed` with a cool-down after which one lazy retry is allowed (no hot loop either way).
    """

    def __init__(self, route: str, clock: Clock, backoff: Backoff, rng: random.Random) -> None:
        self._route, self._clock, self._backoff, self._rng = route, clock, backoff, rng
        self.failures = 0  # consecutive transient failures
        self.parked: AuthProxyError | None = None  # LoginRequired | CredentialFailed | NotConfigured
        self.dead_refresh: str | None = None  # the refresh token the endpoint rejected: never adopt it again
        self.last_code: str | None = None
        self.last_detail: str | None = None  # with the provider's own description: operators only
        self._retry_at: float | None = None  # monotonic: the backoff, or the cool-down of a `failed` credential

    def retry_in(self) -> float | None:
        """Seconds until a request may go out (0.0: now), None when nothing holds it back."""
        if self._retry_at is None:
            return None
        return max(0.0, self._retry_at - self._clock.monotonic())

    def transient(self, exc: TokenEndpointError) -> TokenUnavailable:
        """Count a failure that retrying may fix; the error callers get until the backoff is over."""
        self.failures += 1
        self.last_code, self.last_detail = error_code(exc), exc.detail
        delay = self._backoff.delay(self.failures, self._rng)
        self._retry_at = self._clock.monotonic() + delay
        return TokenUnavailable(
            f"cannot get a token for route {self._route!r}: {exc.message}; retrying in {delay:.0f}s",
            route=self._route,
            retry_after=delay,
            detail=exc.description,
        )

    def park(
        self,
        error: AuthProxyError,
        code: str,
        *,
        cool_down: bool = False,
        dead_refresh: str | None = None,
        detail: str | None = None,
    ) -> None:
        """A human must act before the next request; with `cool_down`, one lazy retry after `backoff.cap`."""
        self.parked, self.failures, self.last_code, self.dead_refresh = error, 0, code, dead_refresh
        self.last_detail = detail or error.message
        self._retry_at = self._clock.monotonic() + self._backoff.cap if cool_down else None

    def cooled_down(self) -> bool:
        """A `failed` credential's cool-down is over: one lazy retry may go out."""
        return self.parked is not None and self.retry_in() == 0.0

    def blocked(self) -> AuthProxyError | None:
        """The error a caller gets instead of a new request now, or None when one may go out."""
        if self.parked is not None:
            return None if self.cooled_down() else self.fresh(self.parked)
        retry_in = self.retry_in()
        if retry_in:
            return unavailable(
                self._route, f"the token endpoint is failing ({self.last_code}); retrying in {retry_in:.0f}s", retry_in
            )
        return None

    def succeeded(self) -> None:
        self.failures, self._retry_at, self.parked, self.dead_refresh, self.last_code = 0, None, None, None, None
        self.last_detail = None

    def clear(self) -> None:
        """A new login or a token saved elsewhere: forget the failures (the outcome codes stay for status)."""
        self.failures, self._retry_at, self.parked, self.dead_refresh = 0, None, None, None

    def fresh(self, error: AuthProxyError) -> AuthProxyError:
        """A new exception per caller (one shared instance would share its traceback)."""
        retry_after = self.retry_in() if isinstance(error, TokenUnavailable) else error.retry_after
        return type(error)(error.message, route=self._route, retry_after=retry_after, detail=error.detail)


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
