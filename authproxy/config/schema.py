"""The configuration schema: typed frozen dataclasses, the single source of truth.

Each field's `metadata` carries its documentation and whether it is a secret; the loader
(`config.py`) validates YAML against these classes, and the docs are generated from them.
"""

from __future__ import annotations

import base64
import dataclasses
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import quote_plus

from authproxy.config.redis_url import redis_secrets


def opt(
    default: Any = None, doc: str = "", *, secret: bool = False, required: bool = False, factory: Any = None
) -> Any:
    """A dataclass field with schema metadata (`doc`, `secret`, `required`)."""
    meta = {"doc": doc, "secret": secret, "required": required}
    if factory is not None:
        return field(default_factory=factory, metadata=meta)
    return field(default=default, metadata=meta)


Grant = Literal["none", "client_credentials", "refresh_token", "authorization_code", "static"]
ClientAuth = Literal["client_secret_basic", "client_secret_post", "none", "private_key_jwt", "client_secret_jwt"]
RetryOn401 = Literal["always", "idempotent", "never"]


@dataclass(frozen=True, slots=True)
class ResponseMapping:
    """Where the token endpoint's answer keeps each value (dotted paths into the JSON body)."""

    access_token: str = opt("access_token", "Path of the access token.")
    expires_in: str = opt("expires_in", "Path of the lifetime in seconds (number or numeric string).")
    refresh_token: str = opt("refresh_token", "Path of a (rotated) refresh token.")
    token_type: str = opt("token_type", "Path of the token type (`bearer` is sent as `Bearer`).")
    scope: str = opt("scope", "Path of the granted scopes (shown in /-/status; a narrower grant is logged).")


@dataclass(frozen=True, slots=True)
class AuthConfig:
    """How a route obtains the credential it injects."""

    grant: Grant = opt("none", "How tokens are obtained.")
    token_url: str | None = opt(None, "Token endpoint; a path (`/o/token/`) is resolved against the upstream.")
    authorize_url: str | None = opt(None, "Authorization endpoint for `authproxy login`.")
    revocation_url: str | None = opt(None, "RFC 7009 revocation endpoint, called by `authproxy logout`.")
    client_id: str | None = opt(None, "OAuth client id.")
    client_secret: str | None = opt(None, "OAuth client secret.", secret=True)
    client_auth: ClientAuth = opt("client_secret_basic", "How the client authenticates to the token endpoint.")
    request_format: Literal["form", "json"] = opt("form", "Token request body encoding.")
    include_grant_type: bool = opt(True, "Send `grant_type` in the token request (StoneX wants none).")
    scope: str | None = opt(None, "Space-separated scopes to request.")
    audience: str | None = opt(None, "Auth0 `audience`, sent with token and authorize requests.")
    extra_params: dict[str, str] = opt(doc="Extra token request parameters.", secret=True, factory=dict)
    extra_headers: dict[str, str] = opt(doc="Extra token request headers.", secret=True, factory=dict)
    refresh_token: str | None = opt(None, "A refresh token to start from (grant refresh_token).", secret=True)
    token: str | None = opt(None, "The token itself (grant static).", secret=True)
    token_type: str | None = opt(None, "Override the type sent in `Authorization: <type> <token>`.")
    default_ttl: float = opt(3600.0, "Lifetime assumed when the answer has no `expires_in` and no JWT `exp`.")
    max_wait: float = opt(10.0, "Seconds a request waits for a token before 503 token_unavailable.")
    min_leeway: float = opt(60.0, "Renew at least this many seconds before expiry (capped at half the lifetime).")
    response: ResponseMapping = opt(doc="Field paths for non-standard token responses.", factory=ResponseMapping)
    redirect_uri: str | None = opt(None, "Loopback callback for `authproxy login`.")
    authorize_params: dict[str, str] = opt(doc="Extra authorize request parameters.", factory=dict)
    private_key: str | None = opt(None, "PEM private key for `private_key_jwt`.", secret=True)
    key_id: str | None = opt(None, "`kid` header of signed client assertions.")
    assertion_audience: str | None = opt(None, "`aud` of client assertions (default: the token URL).")
    assertion_alg: str | None = opt(None, "Signing algorithm (default RS256, or HS256 for client_secret_jwt).")


@dataclass(frozen=True, slots=True)
class UpstreamTLS:
    """How the upstream's certificate is checked, and the client certificate for mutual TLS."""

    verify: bool = opt(True, "Verify the upstream's certificate; false only for tests (a warning is logged).")
    ca_file: str | None = opt(None, "PEM bundle of CAs to trust instead of the system's.")
    cert_file: str | None = opt(None, "Client certificate (PEM) for mutual TLS.")
    key_file: str | None = opt(None, "Private key (PEM) of the client certificate.")


@dataclass(frozen=True, slots=True)
class RateLimit:
    rate: float = opt(10.0, "Requests per second, sustained.")
    burst: int = opt(20, "Requests allowed at once before the rate applies.")


@dataclass(frozen=True, slots=True)
class ClientConfig:
    """A team member (or app) allowed to use the proxy with its own key."""

    key: str | None = opt(None, "The client's proxy key (or key_file).", secret=True)
    key_sha256: str | None = opt(None, "Hex SHA-256 of the key, so the config holds no plaintext.")
    routes: tuple[str, ...] = opt(("*",), "Route names this client may use (* = all).")
    methods: tuple[str, ...] = opt(
        ("*",),
        "HTTP methods allowed (e.g. [GET, HEAD] for read-only; * = all). A key limited to some methods may not "
        "override them (X-HTTP-Method-Override, `_method=`), send a GET or HEAD with a body, or open a WebSocket.",
    )
    websocket: bool = opt(False, "Let a key limited by `methods` open WebSockets anyway (one can send anything).")
    max_concurrent: int = opt(
        128, "Most requests this key may have in flight at once (of 512 upstream connections); more get 429."
    )
    rate_limit: RateLimit | None = opt(None, "Token bucket per client; over it: 429 with Retry-After.")


@dataclass(frozen=True, slots=True)
class ListenerTLS:
    cert_file: str | None = opt(None, "Serve HTTPS with this certificate (PEM).")
    key_file: str | None = opt(None, "Private key (PEM) of the certificate.")


@dataclass(frozen=True, slots=True)
class Limits:
    max_body: int = opt(100 * 1024 * 1024, "Largest request body accepted (bytes or `10MiB`); more gets 413.")
    max_header_size: int = opt(8190, "Longest request line or header field (bytes).")
    client_timeout: float = opt(60.0, "Seconds a client may take to send its request (headers or body chunks).")
    body_timeout: float = opt(
        300.0, "Seconds a client may take to send a whole request body, however steadily; then 408 and closed."
    )
    send_timeout: float = opt(
        60.0,
        "Seconds a client may take to accept more of a response it is being sent; then its connection and the "
        "upstream's are closed (a client that stops reading must not hold an upstream connection).",
    )
    upstream_connections: int = opt(
        512, "Upstream connections of all routes together (token requests have a pool of their own)."
    )
    connection_rest: float = opt(
        0.0,
        "Seconds a released upstream connection rests before reuse; a byte arriving meanwhile closes it (an "
        "upstream answering twice cannot hand one client's answer to the next). 0: off, since under load it "
        "keeps more upstream connections open.",
    )


@dataclass(frozen=True, slots=True)
class RouteConfig:
    """One upstream served under a path prefix."""

    name: str = opt("", "The route's key under `routes:` (set by the loader).")
    prefix: str = opt("", "Path prefix served (default `/<name>`).")
    preset: str | None = opt(None, "A built-in provider preset whose keys are defaults (`authproxy presets`).")
    upstream: str = opt("", "Base URL requests are forwarded to.", required=True)
    headers: dict[str, str] = opt(
        doc="Headers set on every upstream request (e.g. x-api-key).", secret=True, factory=dict
    )
    pass_client_auth: bool = opt(False, "Forward the client's own Authorization and injected headers.")
    connect_timeout: float = opt(10.0, "Seconds to connect to the upstream (then 504).")
    read_timeout: float = opt(60.0, "Seconds of upstream silence tolerated (then 504).")
    retry_on_401: RetryOn401 = opt("always", "Which requests are resent once after a 401.")
    retry_body_limit: int = opt(1024 * 1024, "Largest request body buffered so it can be resent (bytes or `1MiB`).")
    retry_on_invalid_token_403: bool = opt(False, 'Treat 403 with `error="invalid_token"` like a 401.')
    max_concurrent: int | None = opt(None, "Most requests in flight on this route; more get 503 overloaded.")
    max_connections: int | None = opt(
        None,
        "Most upstream connections this route may hold; more requests wait for one (up to connect_timeout). "
        "Default: a fair share of limits.upstream_connections, so one route cannot take them all.",
    )
    transport: Literal["auto", "native", "aiohttp"] = opt(
        "auto",
        "The HTTP client for this route's requests, websockets and token requests: `native` (authproxy's own "
        "HTTP/1.1 client; what `auto` picks) or `aiohttp` (aiohttp's client).",
    )
    tls: UpstreamTLS = opt(doc="TLS towards the upstream (https).", factory=UpstreamTLS)
    auth: AuthConfig = opt(doc="The credential injected into upstream requests.", factory=AuthConfig)


@dataclass(frozen=True, slots=True)
class AdminConfig:
    listen: str | None = opt(
        None, "host:port of a separate listener for the /-/ endpoints (then the main one serves none of them)."
    )
    key: str | None = opt(
        None, "Key for the admin endpoints in team mode (or key_file); /-/health stays open.", secret=True
    )


@dataclass(frozen=True, slots=True)
class LogConfig:
    level: Literal["debug", "info", "warning", "error"] = opt("info", "Minimum level logged.")
    format: Literal["auto", "console", "json"] = opt("auto", "auto: console on a TTY, JSON otherwise.")
    access_log: bool = opt(True, "One line per proxied request.")


@dataclass(frozen=True, slots=True)
class StoreConfig:
    """Where tokens are kept between requests and restarts."""

    kind: Literal["auto", "memory", "file", "redis"] = opt(
        "auto",
        "auto: file when any route logs in or uses a refresh token (they must survive restarts) "
        "or with --workers above 1, else memory.",
    )
    path: str | None = opt(
        None, "File store path (default $XDG_STATE_HOME/authproxy/tokens.json, i.e. ~/.local/state/authproxy/)."
    )
    encryption_key: str | None = opt(
        None,
        "Fernet key that encrypts the stored tokens at rest, in the file or in Redis (or encryption_key_file); "
        "needs the encrypt extra.",
        secret=True,
    )
    allow_shared_permissions: bool = opt(
        False,
        "File store: start (with a warning) even when the store directory is writable by group or others or "
        "owned by another user, or the token file is owned by another user; refused by default, since that "
        "user could replace the tokens. For a deliberately shared directory, e.g. a Kubernetes volume with fsGroup.",
    )
    url: str | None = opt(
        None,
        "Redis URL for kind redis (redis://[:password@]host:6379/0, rediss:// for TLS, or unix://); "
        "Sentinel: redis+sentinel://[:password@]host:26379[,host:port...]/<master name>[/db]; Cluster: "
        "redis+cluster://[:password@]host:port[,host:port...] (rediss+sentinel://, rediss+cluster:// for TLS). "
        "The password is the data nodes' (the master's, the cluster's).",
        secret=True,
    )
    key_prefix: str = opt("authproxy:", "Redis key prefix: proxies with the same url and prefix share tokens.")
    lock_ttl: float = opt(
        10.0, "Seconds after which a dead process's Redis refresh lock expires (a live holder keeps extending it)."
    )
    sentinel_master: str | None = opt(
        None,
        "Redis Sentinel: the master's name (SENTINEL MONITOR <name>); store.url's hosts are then the sentinels "
        "(redis://[:password@]host:26379,host:26380/0). The same as redis+sentinel://.../<name>/0.",
    )
    sentinel_password: str | None = opt(
        None,
        "Redis Sentinel: the sentinels' own password (requirepass in sentinel.conf), when they need one; "
        "the master's stays in store.url.",
        secret=True,
    )
    cluster: bool = opt(
        False,
        "Redis Cluster: store.url's hosts (redis:// or rediss://) are seed nodes of a cluster. The same as "
        "redis+cluster://. Keys are hash-tagged ({prefix}token:{<key>}) so one credential's keys share a slot.",
    )


@dataclass(frozen=True, slots=True)
class Config:
    listen: str = opt("127.0.0.1:8080", "host:port to listen on; loopback by default.")
    allow_anonymous: bool = opt(
        False, "Allow listening beyond loopback with no client keys (anyone who can connect uses the credentials)."
    )
    log: LogConfig = opt(doc="Logging.", factory=LogConfig)
    admin: AdminConfig = opt(doc="Admin endpoints (health, ready, status, metrics, reload).", factory=AdminConfig)
    clients: dict[str, ClientConfig] = opt(doc="Team mode: client keys and what each may use.", factory=dict)
    allowed_hosts: tuple[str, ...] = opt((), "Host names (besides the listen address and localhost) clients use.")
    allowed_origins: tuple[str, ...] = opt((), "Browser origins allowed to call the proxy (e.g. https://app.example).")
    limits: Limits = opt(doc="Request limits against abuse and slow clients.", factory=Limits)
    tls: ListenerTLS = opt(doc="TLS on the listener.", factory=ListenerTLS)
    store: StoreConfig = opt(doc="Token store.", factory=StoreConfig)
    shutdown_timeout: float = opt(30.0, "Seconds in-flight requests may finish after SIGTERM.")
    routes: dict[str, RouteConfig] = opt(doc="Routes by name.", factory=dict)

    @property
    def host(self) -> str:
        return split_listen(self.listen)[0]

    @property
    def port(self) -> int:
        return split_listen(self.listen)[1]


def split_listen(listen: str) -> tuple[str, int]:
    """`127.0.0.1:8080` / `[::1]:8080` / `:8080` → (host, port); raises ValueError."""
    host, sep, port = listen.rpartition(":")
    if not sep:
        raise ValueError("expected host:port")
    host = host.strip("[]") or "127.0.0.1"
    value = int(port)
    if not 0 <= value <= 65535:
        raise ValueError("port out of range")
    return host, value


MASKED = "********"


def masked(obj: Any) -> Any:
    """Plain data for display (`authproxy check`), every secret replaced by a mask."""
    if not dataclasses.is_dataclass(obj):
        return obj
    out: dict[str, Any] = {}
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if isinstance(value, dict):
            value = {k: masked(v) for k, v in value.items()}
            if f.metadata.get("secret"):
                value = {k: MASKED if v else "" for k, v in value.items()}
        elif f.metadata.get("secret") and value:
            value = MASKED
        else:
            value = masked(value)
        out[f.name] = value
    return out


def secret_values(config: Config) -> list[str]:
    """Every secret string in the config, for the log redactor."""
    found: list[str] = []

    def walk(obj: Any) -> None:
        for f in dataclasses.fields(obj):
            value = getattr(obj, f.name)
            if dataclasses.is_dataclass(value):
                walk(value)
            elif isinstance(value, dict):
                for item in value.values():
                    if dataclasses.is_dataclass(item):
                        walk(item)
                    elif f.metadata.get("secret") and isinstance(item, str):
                        found.append(item)
            elif f.metadata.get("secret") and isinstance(value, str):
                found.append(value)

    walk(config)
    found.extend(redis_secrets(config.store.url))  # the password inside store.url, on its own
    for route in config.routes.values():  # the Basic header a client_secret_basic request carries
        auth = route.auth
        if auth.client_id and auth.client_secret:
            plain, encoded = auth.client_id + ":" + auth.client_secret, f"{quote_plus(auth.client_id)}:"
            for pair in (plain, encoded + quote_plus(auth.client_secret)):
                found.append(base64.b64encode(pair.encode()).decode())
    return [s for s in found if s]
