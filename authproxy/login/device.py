"""RFC 8628 device login, shared by `authproxy login ROUTE --device` and the proxy's `/-/login/ROUTE`.

For servers and containers without a browser: ask the device authorization endpoint for a code
(with the route's client auth and scope), show the user the verification link and the user code,
poll the token endpoint at the server's `interval` (`slow_down` adds 5 s, RFC 8628 §3.5) on the
injected clock, and save the tokens as a browser login does. No message holds the device code, a
token or a client secret; the user code is meant to be shown.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from urllib.parse import urlencode

from yarl import URL

from authproxy.clock import Clock
from authproxy.config.schema import RouteConfig
from authproxy.credentials.build import build_endpoint
from authproxy.credentials.client_auth import build_client_auth
from authproxy.credentials.endpoint import USER_AGENT, TokenEndpoint, parse_expires_in
from authproxy.credentials.failures import ADVICE
from authproxy.credentials.tokens import Token
from authproxy.errors import ConfigError, TokenEndpointError
from authproxy.login.flow import ExchangeFailed, LoginError
from authproxy.upstream.egress import EgressPolicy
from authproxy.upstream.transport import Transport

DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"
DEFAULT_INTERVAL = 5.0  # RFC 8628 §3.2: when the server names none
DEFAULT_LIFETIME = 600.0  # when the server names no (usable) expires_in
SLOW_DOWN_STEP = 5.0
MAX_INTERVAL = 60.0


@dataclass(frozen=True, slots=True)
class DeviceCode:
    """What the device authorization endpoint answered; `expires_at` is on the clock's monotonic time."""

    route: str
    device_code: str
    user_code: str
    verification_uri: str
    verification_uri_complete: str | None
    expires_at: float
    interval: float

    def __repr__(self) -> str:  # the device code must not reach a log line
        return f"DeviceCode(route={self.route!r}, user_code={self.user_code!r})"

    @property
    def link(self) -> str:
        """Where the user goes: the complete URI (the code filled in) when the server gave one."""
        return self.verification_uri_complete or self.verification_uri


def check_device_route(route: RouteConfig) -> None:
    """Raise LoginError unless `route` (with its discovered endpoints) can log in with a device code."""
    auth, where = route.auth, f"routes.{route.name}.auth"
    if auth.grant != "authorization_code":
        raise LoginError(
            f"route {route.name!r} uses grant {auth.grant}; a device login saves a refresh token for grant "
            f"authorization_code (set {where}.grant: authorization_code)",
            route=route.name,
        )
    for key in ("device_authorization_url", "token_url", "client_id"):
        if not getattr(auth, key):
            hint = " (the issuer's metadata names none)" if auth.issuer and key.endswith("_url") else ""
            raise LoginError(f"{where}.{key} is not set{hint}; a device login needs it", route=route.name)


async def request_device_code(
    route: RouteConfig, *, transport: Transport, clock: Clock, egress: EgressPolicy | None = None
) -> DeviceCode:
    """RFC 8628 §3.1-3.2: a device code and user code for `route`; LoginError naming the URL if refused."""
    check_device_route(route)
    auth, where = route.auth, f"routes.{route.name}.auth"
    url = auth.device_authorization_url or ""
    try:
        client_auth = build_client_auth(auth, auth.token_url or url, where=where)
    except ConfigError as exc:
        raise LoginError("; ".join(f"{path}: {msg}" for path, msg in exc.problems), route=route.name) from None
    via = egress.choose(URL(url)).egress if egress is not None else None
    endpoint = TokenEndpoint(auth, url, client_auth, clock, transport, what="device authorization endpoint", egress=via)
    parts = client_auth(clock)
    body = {"client_id": auth.client_id or "", **parts.params}  # many servers want client_id even with Basic
    if auth.scope:
        body["scope"] = auth.scope
    if auth.audience:
        body["audience"] = auth.audience
    headers = {
        "Accept": "application/json",
        "Content-Type": "application/x-www-form-urlencoded",
        "User-Agent": USER_AGENT,
        **parts.headers,
    }
    try:
        status, content_type, raw = await endpoint.post(urlencode(body).encode(), headers)
    except TokenEndpointError as exc:
        raise LoginError(f"{exc.message} ({url})", route=route.name) from None
    answer = _json(raw)
    if not isinstance(answer, dict):
        shown = content_type.split(";")[0] or "none"
        raise LoginError(
            f"the device authorization endpoint {url} answered HTTP {status} with no JSON object (content-type "
            f"{shown}); check {where}.device_authorization_url",
            route=route.name,
        )
    if status != 200 or "error" in answer:
        error = _text(answer.get("error"), 64) or "no OAuth error"
        advice = ADVICE.get(
            error, f"check {where}.client_id, client_auth and scope, and that the client may use the device flow"
        )
        raise LoginError(
            f"the device authorization endpoint {url} answered HTTP {status}: {error}; {advice}", route=route.name
        )
    values = {key: _text(answer.get(key), 2048) for key in ("device_code", "user_code", "verification_uri")}
    values["verification_uri"] = values["verification_uri"] or _text(answer.get("verification_url"), 2048)  # Google
    for key, value in values.items():
        if not value:
            raise LoginError(f"the device authorization endpoint {url} answered without {key}", route=route.name)
    complete = _text(answer.get("verification_uri_complete"), 2048)
    for key, link in (("verification_uri", values["verification_uri"]), ("verification_uri_complete", complete)):
        if link and not _http_url(link):
            raise LoginError(
                f"the device authorization endpoint {url} answered a {key} that is not an http(s) URL",
                route=route.name,
            )
    lifetime = parse_expires_in(answer.get("expires_in")) or DEFAULT_LIFETIME
    interval = parse_expires_in(answer.get("interval")) or DEFAULT_INTERVAL
    return DeviceCode(
        route.name,
        values["device_code"],
        values["user_code"],
        values["verification_uri"],
        complete or None,
        clock.monotonic() + lifetime,
        min(interval, MAX_INTERVAL),
    )


async def poll_for_token(
    route: RouteConfig, code: DeviceCode, *, transport: Transport, clock: Clock, egress: EgressPolicy | None = None
) -> Token:
    """RFC 8628 §3.4-3.5: ask the token endpoint every `interval` seconds until the user decides."""
    try:
        endpoint = build_endpoint(route, clock, transport, egress)
    except ConfigError as exc:
        raise LoginError("; ".join(f"{path}: {msg}" for path, msg in exc.problems), route=route.name) from None
    again = f"run `authproxy login {route.name} --device` again (or open /-/login/{route.name})"
    interval = code.interval
    while True:
        await clock.sleep(interval)
        if clock.monotonic() >= code.expires_at:
            raise LoginError(
                f"the user code {code.user_code} expired before it was confirmed; {again}", route=route.name
            )
        try:
            return await endpoint.request(DEVICE_GRANT, {"device_code": code.device_code})
        except TokenEndpointError as exc:
            error = exc.oauth_error
            if error == "authorization_pending":
                continue
            if error == "slow_down":
                interval = min(interval + SLOW_DOWN_STEP, MAX_INTERVAL)
                continue
            if error == "expired_token":
                raise LoginError(
                    f"the user code {code.user_code} expired before it was confirmed (expired_token); {again}",
                    route=route.name,
                ) from None
            if error == "access_denied":
                raise LoginError(
                    f"the login was denied at the provider (access_denied); {again} and approve the access",
                    route=route.name,
                ) from None
            if error is None and (exc.status is None or exc.status >= 500):
                continue  # the token endpoint hiccuped: keep asking until the code expires
            advice = ADVICE.get(error or "", "check the route's auth settings")
            raise ExchangeFailed(
                f"the device code could not be exchanged: {exc.detail}; {advice}", route=route.name
            ) from None


def _json(raw: bytes) -> object:
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return None


def _text(value: object, limit: int) -> str:
    """A provider-supplied string fit to print: printable, bounded; '' otherwise."""
    if not isinstance(value, str) or len(value) > limit or not value.isprintable():
        return ""
    return value.strip()


def _http_url(value: str) -> bool:
    try:
        url = URL(value)
    except ValueError:
        return False
    return url.scheme in ("http", "https") and bool(url.host)
