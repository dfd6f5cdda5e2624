"""One token request, for every grant: build the body, POST it, turn the answer into a Token.

Grants differ only in their parameters; encoding (form or JSON), client authentication,
response field mapping and RFC 6749 §5.2 error classification are written once, here.
Error texts never echo the response body or anything we sent (secrets are redacted from the
server's `error_description`).
"""

from __future__ import annotations

import asyncio
import base64
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

from multidict import CIMultiDict
from yarl import URL

from authproxy import __version__
from authproxy.clock import Clock
from authproxy.config.schema import AuthConfig
from authproxy.credentials.client_auth import ClientAuthMethod
from authproxy.credentials.tokens import Token
from authproxy.errors import TokenEndpointError
from authproxy.observability.logging import secret_forms
from authproxy.upstream.egress import Egress
from authproxy.upstream.tls import TlsSettings
from authproxy.upstream.transport import (
    Endpoint,
    Transport,
    TransportError,
    UpstreamConnectError,
    UpstreamResponse,
    UpstreamTimeoutError,
)

# RFC 6749 §5.2 errors that retrying without a human cannot fix.
PERMANENT_ERRORS = frozenset(
    {"invalid_client", "invalid_grant", "invalid_scope", "unauthorized_client", "unsupported_grant_type"}
)
MAX_RESPONSE_BYTES = 256 * 1024
TOTAL_TIMEOUT, CONNECT_TIMEOUT = 30.0, 10.0
USER_AGENT = f"authproxy/{__version__}"  # some token endpoints (behind CDNs) refuse requests without one


@dataclass(frozen=True, slots=True)
class TokenEndpoint:
    """A route's token endpoint and how to talk to it (through the transport, like every outbound request)."""

    auth: AuthConfig
    token_url: str
    client_auth: ClientAuthMethod
    clock: Clock
    transport: Transport
    timeout: float = TOTAL_TIMEOUT
    what: str = "token endpoint"  # how messages name it
    tls: TlsSettings | None = None  # None: the system's CAs
    egress: Egress | None = None  # the egress proxy token requests go through; None: direct
    endpoint: Endpoint = field(init=False)
    target: str = field(init=False)

    def __post_init__(self) -> None:
        url = URL(self.token_url)
        object.__setattr__(self, "endpoint", Endpoint(url, self.tls, egress=self.egress))
        object.__setattr__(self, "target", url.raw_path_qs or "/")

    async def request(
        self,
        grant_type: str,
        params: Mapping[str, str],
        *,
        previous_refresh: str | None = None,
        send_scope: bool = True,
    ) -> Token:
        """POST one token request; raise TokenEndpointError (already classified) on any failure.

        A refresh token missing from the answer is replaced by `previous_refresh`; `send_scope`
        False leaves `scope` out of the body (jwt_bearer carries it in the assertion).
        """
        auth = self.auth
        parts = self.client_auth(self.clock)
        body: dict[str, str] = {"grant_type": grant_type} if auth.include_grant_type else {}
        body.update(params)
        body.update(parts.params)
        if auth.scope and send_scope:
            body["scope"] = auth.scope
        if auth.audience:
            body["audience"] = auth.audience
        body.update(auth.extra_params)
        headers = {"Accept": "application/json", "User-Agent": USER_AGENT, **parts.headers}
        if auth.request_format == "json":
            data, headers["Content-Type"] = json.dumps(body).encode(), "application/json"
        else:
            data, headers["Content-Type"] = urlencode(body).encode(), "application/x-www-form-urlencoded"
        headers.update(auth.extra_headers)
        secrets = [*parts.secrets, *params.values(), *auth.extra_params.values(), *auth.extra_headers.values()]
        sent_at = self.clock.now()  # lifetimes count from the request, not the answer
        status, content_type, raw = await self.post(data, headers)
        answer = _parse_json(raw)
        if not 200 <= status < 300 or (
            isinstance(answer, dict) and "error" in answer and lookup(answer, auth.response.access_token) is None
        ):
            raise _error_from(status, content_type, answer, secrets)
        if not isinstance(answer, dict):
            raise TokenEndpointError(
                f"token endpoint answered HTTP {status} with a body that is not a JSON object "
                f"(content-type {content_type or 'none'})",
                status=status,
            )
        return self._token_from(answer, status, sent_at, previous_refresh)

    async def post(self, data: bytes, headers: Mapping[str, str]) -> tuple[int, str, bytes]:
        """POST `data` without following redirects: (status, content type, body up to MAX_RESPONSE_BYTES)."""
        host = self.endpoint.host_header
        try:
            async with asyncio.timeout(self.timeout):
                response = await self.transport.request(
                    self.endpoint,
                    "POST",
                    self.target,
                    CIMultiDict(headers),
                    data,
                    connect_timeout=min(CONNECT_TIMEOUT, self.timeout),
                    read_timeout=self.timeout,
                )
                try:
                    return response.status, response.headers.get("Content-Type", ""), await _read_limited(response)
                finally:
                    response.release()
        except (TimeoutError, UpstreamTimeoutError):
            raise TokenEndpointError(f"{self.what} {host} timed out") from None
        except UpstreamConnectError as exc:
            raise TokenEndpointError(f"cannot reach {self.what} {host} ({exc.reason})") from None
        except TransportError as exc:
            raise TokenEndpointError(f"cannot reach {self.what} {host} ({exc})") from None

    def _token_from(self, answer: dict[str, Any], status: int, sent_at: float, previous_refresh: str | None) -> Token:
        mapping = self.auth.response
        access = lookup(answer, mapping.access_token)
        if not isinstance(access, str) or not access:
            raise TokenEndpointError(
                f"token endpoint answered HTTP {status} without an access token "
                f"(no string at {mapping.access_token!r})",
                status=status,
            )
        if not access.isascii() or not access.isprintable() or " " in access:
            raise TokenEndpointError(
                f"token endpoint answered HTTP {status} with an access token that cannot be "
                "sent in a header (control characters or spaces)",
                status=status,
            )
        now = self.clock.now()
        expires_at = _expiry(lookup(answer, mapping.expires_in), access, sent_at, self.auth.default_ttl)
        if expires_at <= now:
            raise TokenEndpointError(
                f"token endpoint answered HTTP {status} with an already expired token", status=status
            )
        refresh = lookup(answer, mapping.refresh_token)
        granted = lookup(answer, mapping.scope)
        return Token(
            access_token=access,
            expires_at=expires_at,
            refresh_token=refresh if isinstance(refresh, str) and refresh else previous_refresh,
            token_type=self.auth.token_type or normalize_type(lookup(answer, mapping.token_type)),
            obtained_at=sent_at,
            scope=_scope(granted),
        )


def _scope(value: Any) -> str | None:
    """The granted scopes as one normalised string; None when absent or not something to show."""
    if not isinstance(value, str) or len(value) > 4096 or not value.isprintable():
        return None
    return " ".join(value.split()) or None


def lookup(data: Any, path: str) -> Any:
    """Follow a dotted path (`data.token`, `items.0.value`) into parsed JSON; None if absent."""
    for part in path.split("."):
        if isinstance(data, dict):
            data = data.get(part)
        elif isinstance(data, list) and part.isdigit() and int(part) < len(data):
            data = data[int(part)]
        else:
            return None
    return data


def normalize_type(value: Any) -> str:
    """`bearer` in any case → `Bearer`; missing or unusable (spaces, CR/LF) → `Bearer`."""
    if not isinstance(value, str) or not value or not value.isascii() or not value.isalnum():
        return "Bearer"
    return "Bearer" if value.lower() == "bearer" else value


def parse_expires_in(value: Any) -> float | None:
    """A positive finite number or numeric string; anything else (negative, garbage) → None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, str):
        try:
            value = float(value.strip())
        except ValueError:
            return None
    try:
        if isinstance(value, int | float) and math.isfinite(value) and value > 0:
            return float(value)
    except OverflowError:  # an integer too large for a float: no real lifetime
        return None
    return None


def jwt_expiry(access_token: str) -> float | None:
    """The `exp` claim of a JWT access token, read without verification (only to schedule)."""
    parts = access_token.split(".")
    if len(parts) != 3:
        return None
    try:
        payload = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
        exp = payload.get("exp") if isinstance(payload, dict) else None
        if isinstance(exp, bool) or not isinstance(exp, int | float) or not math.isfinite(exp):
            return None
        return float(exp)
    except (ValueError, TypeError, RecursionError, OverflowError):
        return None


def _expiry(expires_in: Any, access: str, sent_at: float, default_ttl: float) -> float:
    """expires_in if usable, else the JWT's exp, else default_ttl (bad expires_in is ignored)."""
    lifetime = parse_expires_in(expires_in)
    if lifetime is not None:
        return sent_at + lifetime
    exp = jwt_expiry(access)
    if exp is not None:
        return exp
    return sent_at + default_ttl


def _parse_json(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError):  # garbage, or nesting deep enough to blow the stack
        return None


def _error_from(status: int, content_type: str, answer: Any, secrets: list[str]) -> TokenEndpointError:
    error = answer.get("error") if isinstance(answer, dict) else None
    if not isinstance(error, str) or not error or len(error) > 64:
        return TokenEndpointError(
            f"token endpoint answered HTTP {status} (content-type {content_type or 'none'}, no OAuth error)",
            status=status,
        )
    description = answer.get("error_description")
    shown = redact(description, secrets) if isinstance(description, str) and description else None
    return TokenEndpointError(
        f"token endpoint answered HTTP {status}: {error}",
        oauth_error=error,
        status=status,
        permanent=error in PERMANENT_ERRORS,
        description=shown,
    )


def redact(text: str, secrets: list[str], limit: int = 200) -> str:
    """Hide anything we sent that is secret, in any form it may be echoed in (percent-, form- and
    JSON-encoded, Base64), drop control characters, and cut to `limit`."""
    forms = {form for secret in secrets if secret for form in secret_forms(secret)}
    for secret in sorted(forms, key=len, reverse=True):
        text = text.replace(secret, "***")
    text = "".join(ch if ch.isprintable() else " " for ch in text)
    return text if len(text) <= limit else text[:limit] + "…"


async def _read_limited(response: UpstreamResponse) -> bytes:
    """The body, up to MAX_RESPONSE_BYTES (a token answer is small; more is not a token answer)."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.chunks():
        chunks.append(chunk)
        size += len(chunk)
        if size > MAX_RESPONSE_BYTES:
            break
    return b"".join(chunks)


__all__ = ["PERMANENT_ERRORS", "TokenEndpoint", "jwt_expiry", "lookup", "normalize_type", "parse_expires_in"]
