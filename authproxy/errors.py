"""Errors with stable codes: every client-facing failure maps to one of these.

The `code` is part of the public interface (README lists them); the `message` is safe to show
to a client and never holds a secret.
"""

from __future__ import annotations


class AuthProxyError(Exception):
    """Base class; `status` is the HTTP status the client gets."""

    code = "internal_error"
    status = 500

    def __init__(
        self, message: str, *, route: str | None = None, retry_after: float | None = None, detail: str | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.route = route
        self.retry_after = retry_after
        # Operators only (the CLI, the log): e.g. the provider's error_description. Never in body().
        self.detail = detail

    def body(self, request_id: str | None) -> dict[str, object]:
        return {"error": {"code": self.code, "message": self.message, "route": self.route, "request_id": request_id}}


class RouteNotFound(AuthProxyError):
    code, status = "route_not_found", 404


class BadPath(AuthProxyError):
    code, status = "bad_path", 400


class AbsoluteFormRefused(AuthProxyError):
    code, status = "absolute_form_refused", 400


class MethodRefused(AuthProxyError):
    code, status = "method_not_allowed", 405


class BadRequest(AuthProxyError):
    code, status = "bad_request", 400


class UpstreamUnreachable(AuthProxyError):
    code, status = "upstream_unreachable", 502


class EgressProxyUnreachable(AuthProxyError):
    """The egress (forward) proxy could not be reached."""

    code, status = "egress_proxy_unreachable", 502


class EgressProxyRefused(AuthProxyError):
    """The egress proxy refused to carry the request (CONNECT refused, or 407 to our credentials)."""

    code, status = "egress_proxy_refused", 502


class UpstreamTimeout(AuthProxyError):
    code, status = "upstream_timeout", 504


class UpstreamError(AuthProxyError):
    """The upstream broke the HTTP exchange (reset, malformed response) before answering."""

    code, status = "upstream_error", 502


class UpstreamBadResponse(AuthProxyError):
    """The upstream's answer broke a limit before its body (head size, header count, interim answers)."""

    code, status = "upstream_bad_response", 502


class TokenUnavailable(AuthProxyError):
    """No valid token right now (endpoint failing, or waited too long); retry later."""

    code, status = "token_unavailable", 503


class LoginRequired(AuthProxyError):
    """The refresh token is gone or dead: a human must run `authproxy login`."""

    code, status = "login_required", 503


class CredentialFailed(AuthProxyError):
    """The token endpoint refused the client itself (invalid_client, invalid_scope...)."""

    code, status = "credential_failed", 503


class NotConfigured(CredentialFailed):
    """The route's credential settings are empty (e.g. `${VAR:-}` with VAR unset): set them, restart.

    A subclass of CredentialFailed (a human must act), with its own code so a client can tell
    "nobody configured this" from "the provider refused the configured client".
    """

    code = "not_configured"


class TokenEndpointError(Exception):
    """Raised by token sources: what the token endpoint answered, already classified.

    `oauth_error` is the RFC 6749 §5.2 `error` value when there was one. `permanent` means
    retrying without a human will not help. `message` may reach proxy clients; the provider's own
    `error_description` (redacted) is kept apart in `description`, for operators only (the log,
    `/-/status`, the CLI): some providers echo what they received in it. No text holds a secret.
    """

    def __init__(
        self,
        message: str,
        *,
        oauth_error: str | None = None,
        status: int | None = None,
        permanent: bool = False,
        description: str | None = None,
        code: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code  # a failure before any request (e.g. `token_file_unreadable`); None: from the answer
        self.oauth_error = oauth_error
        self.status = status
        self.permanent = permanent
        self.description = description

    @property
    def detail(self) -> str:
        """The message with the provider's description: for operators, never for proxy clients."""
        return f"{self.message} ({self.description})" if self.description else self.message


class ConfigError(Exception):
    """Every problem found in a config file, reported at once."""

    def __init__(self, problems: list[tuple[str, str]], source: str = "config") -> None:
        self.problems = problems  # (key path, message with how to fix it)
        self.source = source
        super().__init__(self.render())

    def render(self) -> str:
        lines = [f"{self.source}: {len(self.problems)} problem(s):"]
        lines += [f"  - {path}: {msg}" if path else f"  - {msg}" for path, msg in self.problems]
        return "\n".join(lines)


class Unauthorized(AuthProxyError):
    """Team mode: no proxy key, or one no client has."""

    code, status = "unauthorized", 401


class Forbidden(AuthProxyError):
    """Team mode: the client's key may not use this route or method."""

    code, status = "forbidden", 403


class RateLimited(AuthProxyError):
    code, status = "rate_limited", 429


class MisdirectedHost(AuthProxyError):
    """The Host header names something other than this proxy (e.g. DNS rebinding)."""

    code, status = "host_not_allowed", 421


class CrossSiteRefused(AuthProxyError):
    """A browser request from another site or a foreign Origin."""

    code, status = "cross_site_refused", 403


class BodyTooLarge(AuthProxyError):
    code, status = "body_too_large", 413


class ClientTooSlow(AuthProxyError):
    code, status = "client_timeout", 408


class Overloaded(AuthProxyError):
    """The route already has `max_concurrent` requests in flight."""

    code, status = "overloaded", 503
