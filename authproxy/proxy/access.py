"""Inbound access: who may use the proxy (team mode keys) and what browsers may not do to it.

Team mode: each client presents its own proxy key (`Authorization: Bearer <key>` or
`X-Authproxy-Key`); keys are kept only as SHA-256 digests and compared in constant time. A
client sees only the routes and methods it is allowed, within its rate limit.

Browser protection (always on): a page in the user's browser can send requests to a loopback
proxy, and with DNS rebinding even read the answers; requests whose Host is not one of the
proxy's names, or that come from another site, are refused.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
from dataclasses import dataclass
from urllib.parse import unquote_plus

from multidict import CIMultiDictProxy

from authproxy.clock import Clock
from authproxy.config.schema import Config
from authproxy.errors import AuthProxyError, CrossSiteRefused, Forbidden, MisdirectedHost, RateLimited, Unauthorized

KEY_HEADER = "X-Authproxy-Key"
ALLOWED_SEEN = 64  # Host values remembered as allowed (a bound: a client may send any Host)


class TokenBucket:
    """`rate` requests per second with bursts up to `burst`, on the injected clock."""

    def __init__(self, rate: float, burst: int, clock: Clock) -> None:
        self.rate, self.burst, self.clock = rate, burst, clock
        self.tokens = float(burst)
        self.updated = clock.monotonic()

    def take(self) -> float:
        """0 when a request may pass (and counts it), else the seconds until one may."""
        now = self.clock.monotonic()
        self.tokens = min(self.burst, self.tokens + (now - self.updated) * self.rate)
        self.updated = now
        if self.tokens >= 1:
            self.tokens -= 1
            return 0.0
        return (1 - self.tokens) / self.rate if self.rate > 0 else 3600.0


@dataclass(slots=True)
class Client:
    name: str
    digest: bytes
    routes: frozenset[str] | None  # None: every route
    methods: frozenset[str] | None  # None: every method
    bucket: TokenBucket | None
    websocket: bool = True  # may open WebSockets (a key limited by `methods` may not, unless allowed)
    max_concurrent: int = 128
    in_flight: int = 0

    def may_use(self, route: str) -> bool:
        return self.routes is None or route in self.routes


def digest(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


class Gatekeeper:
    """Identifies clients by key and decides what each may do; built from the config once."""

    def __init__(self, config: Config, clock: Clock) -> None:
        self.clients: dict[bytes, Client] = {}
        for name, cfg in config.clients.items():
            key_digest = digest(cfg.key) if cfg.key is not None else bytes.fromhex(cfg.key_sha256 or "")
            bucket = TokenBucket(cfg.rate_limit.rate, cfg.rate_limit.burst, clock) if cfg.rate_limit else None
            methods = None if "*" in cfg.methods else frozenset(m.upper() for m in cfg.methods)
            self.clients[key_digest] = Client(
                name,
                key_digest,
                None if "*" in cfg.routes else frozenset(cfg.routes),
                methods,
                bucket,
                websocket=methods is None or cfg.websocket,
                max_concurrent=cfg.max_concurrent,
            )
        self.admin_digest = digest(config.admin.key) if config.admin.key else None

    @property
    def team(self) -> bool:
        return bool(self.clients)

    def identify(self, headers: CIMultiDictProxy[str]) -> tuple[Client, bool]:
        """The client whose key the request carries, and whether it came in Authorization."""
        key, in_authorization = presented_key(headers)
        client = self.clients.get(digest(key)) if key else None
        if client is None or not hmac.compare_digest(client.digest, digest(key or "")):
            raise Unauthorized(
                "a valid proxy key is required: send `Authorization: Bearer <your proxy key>` or "
                f"`{KEY_HEADER}: <your proxy key>`"
            )
        return client, in_authorization

    def authorize(
        self, client: Client, route: str, method: str, headers: CIMultiDictProxy[str], query: str | None
    ) -> None:
        """403 for what the key may not do, 429 over its rate or its requests in flight."""
        if not client.may_use(route) or (client.methods is not None and method not in client.methods):
            raise Forbidden("this proxy key may not make this request")
        if client.methods is not None:
            read_only_refusal(client, method, headers, query)
        elif headers.get("Upgrade", "").lower() == "websocket" and not client.websocket:
            raise Forbidden("this proxy key may not open WebSockets")
        if client.in_flight >= client.max_concurrent:
            raise RateLimited(
                f"this proxy key already has {client.max_concurrent} requests in flight "
                f"(clients.{client.name}.max_concurrent); retry when one has finished",
                retry_after=1,
            )
        if client.bucket is not None:
            wait = client.bucket.take()
            if wait:
                raise RateLimited("too many requests for this proxy key; slow down", retry_after=wait)

    def admin_allowed(self, headers: CIMultiDictProxy[str]) -> bool:
        """Admin endpoints need the admin key in team mode (or when one is set)."""
        if self.admin_digest is None:
            return not self.team
        key, _ = presented_key(headers)
        return key is not None and hmac.compare_digest(digest(key), self.admin_digest)


METHOD_OVERRIDES = ("X-HTTP-Method-Override", "X-HTTP-Method", "X-Method-Override")


def read_only_refusal(client: Client, method: str, headers: CIMultiDictProxy[str], query: str | None) -> None:
    """A key limited to some methods (read-only: GET, HEAD) may not get around the limit.

    Many frameworks honour a method override (a header or `?_method=DELETE`), a body on a GET can carry
    an action, and a WebSocket, once open, can send anything. What no proxy can see is an upstream that
    acts on a plain GET (a query parameter it interprets): the README says so.
    """
    allowed = ", ".join(sorted(client.methods or ()))
    for name in METHOD_OVERRIDES:
        if name in headers:
            raise Forbidden(f"{name} is refused for this proxy key: it may use {allowed} only")
    if query is not None and "_method" in query.lower() and _overrides_method(query):
        raise Forbidden(f"a _method= query parameter is refused for this proxy key: it may use {allowed} only")
    if method in ("GET", "HEAD") and (headers.get("Content-Length", "0") != "0" or "Transfer-Encoding" in headers):
        raise Forbidden(f"a {method} with a body is refused for this proxy key (it may use {allowed} only)")
    if headers.get("Upgrade", "").lower() == "websocket" and not client.websocket:
        raise Forbidden(
            f"this proxy key may not open WebSockets (it may use {allowed} only; "
            f"clients.{client.name}.websocket: true allows them)"
        )


def _overrides_method(query: str) -> bool:
    for item in query.replace(";", "&").split("&"):
        name = unquote_plus(item.partition("=")[0]).strip().lower()
        if name == "_method":
            return True
    return False


def presented_key(headers: CIMultiDictProxy[str]) -> tuple[str | None, bool]:
    key = headers.get(KEY_HEADER)
    if key is not None:
        return key, False
    authorization = headers.get("Authorization", "")
    scheme, _, value = authorization.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip(), True
    if scheme.lower() == "basic" and value.strip():  # a browser's login prompt: the key is the password
        try:
            _, _, password = base64.b64decode(value.strip(), validate=True).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            return None, True
        return password or None, True
    return None, False


class BrowserGuard:
    """Refuses requests a web page could have made: foreign Host names, foreign origins, cross-site."""

    def __init__(self, config: Config) -> None:
        names = {"localhost", config.host.lower(), *(h.lower() for h in config.allowed_hosts)}
        self.hosts = frozenset(names)
        self.origins = frozenset(o.rstrip("/") for o in config.allowed_origins)
        self._allowed: set[str] = set()  # Host header values already found to be ours, as sent

    def check(
        self, headers: CIMultiDictProxy[str], *, navigation_ok: bool = False, own_origin: str | None = None
    ) -> AuthProxyError | None:
        """`own_origin`: the proxy's own origin as this request reached it, accepted as an Origin (the
        console's own page; its Host was checked first, so a rebound DNS name cannot pass as it)."""
        host = headers.get("Host")
        if host is not None and host not in self._allowed:
            name = host_name(host)
            if name not in self.hosts and not _ip_literal(name):
                return MisdirectedHost(
                    f"Host {name!r} is not a name of this proxy; if clients really use it, add "
                    "it to allowed_hosts in the config"
                )
            if len(self._allowed) < ALLOWED_SEEN:  # every request names the same few Host values
                self._allowed.add(host)
        origin = headers.get("Origin")
        if origin is not None:
            if origin.rstrip("/") not in self.origins and origin != own_origin:
                return CrossSiteRefused(
                    f"requests from the web origin {origin!r} are refused; to allow it, add it "
                    "to allowed_origins in the config"
                )
        elif headers.get("Sec-Fetch-Site") == "cross-site" and not navigation_ok:
            return CrossSiteRefused(
                "cross-site requests from a browser are refused; to allow a web app, add its "
                "origin to allowed_origins in the config"
            )
        return None


def host_name(host: str) -> str:
    """The name part of a Host header, lower-cased, without port or IPv6 brackets."""
    host = host.strip().lower()
    if host.startswith("["):
        return host[1 : host.find("]")] if "]" in host else host
    name, _, _ = host.partition(":")
    return name.rstrip(".")


def _ip_literal(name: str) -> bool:
    """DNS rebinding needs a DNS name; a request addressed to an IP literal cannot be one."""
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True
