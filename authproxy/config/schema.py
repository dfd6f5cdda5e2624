"""The configuration schema: typed frozen dataclasses, the single source of truth.

Each field's `metadata` carries its documentation and whether it is a secret; the loader
(`config.py`) validates YAML against these classes, and the docs are generated from them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal


def opt(
    default: Any = None, doc: str = "", *, secret: bool = False, required: bool = False, factory: Any = None
) -> Any:
    """A dataclass field with schema metadata (`doc`, `secret`, `required`)."""
    meta = {"doc": doc, "secret": secret, "required": required}
    if factory is not None:
        return field(default_factory=factory, metadata=meta)
    return field(default=default, metadata=meta)


Grant = Literal[
    "none", "client_credentials", "refresh_token", "authorization_code", "static", "jwt_bearer", "token_exchange"
]
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
    issuer: str | None = opt(
        None,
        "Authorization server issuer URL: token_url, authorize_url, revocation_url and device_authorization_url are "
        "filled from its OpenID Connect Discovery or RFC 8414 metadata before the first token request (keys given "
        "explicitly win); `authproxy discover ROUTE` shows what it finds.",
    )
    device_authorization_url: str | None = opt(
        None, "RFC 8628 device authorization endpoint, for `authproxy login ROUTE --device` (or from `issuer`)."
    )
    login: Literal["browser", "device"] = opt(
        "browser",
        "How `authproxy login` and /-/login/ROUTE log in: `browser` (authorization code with PKCE) or `device` "
        "(RFC 8628 device code: a user code to enter on any device; for servers and containers without a browser).",
    )
    assertion_issuer: str | None = opt(
        None, "`iss` of a jwt_bearer grant assertion (default: client_id; from service_account_file: client_email)."
    )
    assertion_subject: str | None = opt(
        None, "`sub` of a jwt_bearer grant assertion (default: the issuer; Google: a user to act as, by delegation)."
    )
    service_account_file: str | None = opt(
        None,
        "Google-style service-account JSON key (client_email, private_key, private_key_id, token_uri) for grant "
        "jwt_bearer: sets the assertion's iss, kid, aud, the private key and (unless given) token_url.",
    )
    subject_token_file: str | None = opt(
        None,
        "Grant token_exchange (RFC 8693): file holding the subject token, read again for every exchange "
        "(e.g. a Kubernetes projected service-account token, which rotates).",
    )
    subject_token_type: str = opt("urn:ietf:params:oauth:token-type:jwt", "RFC 8693 type of the subject token.")
    actor_token_file: str | None = opt(None, "Grant token_exchange: file holding an actor token, read every time.")
    actor_token_type: str = opt("urn:ietf:params:oauth:token-type:jwt", "RFC 8693 type of the actor token.")
    requested_token_type: str | None = opt(None, "Grant token_exchange: the RFC 8693 token type asked for.")
    resource: str | None = opt(None, "Grant token_exchange: RFC 8693 `resource`, the URI of the target service.")


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
class EgressProxyConfig:
    """A corporate forward proxy that outbound requests (token, upstream, websocket) go through."""

    url: str | None = opt(
        None,
        "The egress proxy, http://host:port (user:password@ may be in it), or `none` to go direct whatever the "
        "environment says. Unset: HTTPS_PROXY / HTTP_PROXY (either case) if from_env.",
    )
    username: str | None = opt(None, "User name for the proxy's Basic auth (Proxy-Authorization).")
    password: str | None = opt(None, "Password for the proxy's Basic auth (or password_file).", secret=True)
    no_proxy: tuple[str, ...] | None = opt(
        None,
        "Hosts reached directly: names (`example.com` and `.example.com` match subdomains too), IPs, CIDR "
        "ranges, host:port, `*`. Unset: NO_PROXY / no_proxy from the environment if from_env.",
    )
    from_env: bool = opt(
        True, "Use HTTPS_PROXY, HTTP_PROXY and NO_PROXY (either case) where this section sets no url / no_proxy."
    )


@dataclass(frozen=True, slots=True)
class RouteConfig:
    """One upstream served under a path prefix."""

    name: str = opt("", "The route's key under `routes:` (set by the loader).")
    prefix: str = opt("", "Path prefix served (default `/<name>`).")
    preset: str | None = opt(
        None,
        "A built-in provider preset whose keys are defaults (`authproxy presets`); one with parameters is written "
        "`preset: {name: entra, tenant: contoso.onmicrosoft.com}` (`authproxy presets NAME` lists them).",
    )
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
    egress_proxy: EgressProxyConfig | None = opt(
        None, "This route's egress proxy (wins over the top-level egress_proxy); unset: the top-level one."
    )
    auth: AuthConfig = opt(doc="The credential injected into upstream requests.", factory=AuthConfig)
    env_vars: dict[str, str] = opt(
        doc="Set by the loader: the environment variable(s) behind each of the route's keys written as `${VAR}` "
        "(`auth.client_id: STOCKX_CLIENT_ID`), so advice about an empty key names the variable to export.",
        factory=dict,
    )


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
class ConsoleConfig:
    """The web console at /-/ (routes, recent requests, Try it, Postman export)."""

    requests: int = opt(200, "Recent requests kept for the console's request list (0: none kept).")
    capture_bodies: int | None = opt(
        None,
        "KiB (1-64) of each request and response body kept (redacted) for the console's detail view and the "
        "trace; unset: no body is kept.",
    )


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
    egress_proxy: EgressProxyConfig | None = opt(
        None, "The egress (forward) proxy for every route; unset: HTTPS_PROXY / HTTP_PROXY / NO_PROXY are honoured."
    )
    routes: dict[str, RouteConfig] = opt(doc="Routes by name.", factory=dict)
    console: ConsoleConfig = opt(doc="The web console at /-/.", factory=ConsoleConfig)
    trace: tuple[str, ...] = opt(
        (),
        "Routes whose requests are logged in full, one `trace` line each (upstream URL, heads with secrets "
        "redacted, timings, retry); `[all]` for every route. Also `authproxy run --trace ROUTE`.",
    )
    # Filled by the loader, not keys of the file (`internal`: the loader, docs and masked() skip them).
    env_sources: dict[str, tuple[str, ...]] = field(
        default_factory=dict, compare=False, repr=False, metadata={"internal": True, "doc": ""}
    )  # key path -> the variables its value was expanded from, for hints ("set STOCKX_CLIENT_ID")
    load_warnings: tuple[str, ...] = field(default=(), compare=False, repr=False, metadata={"internal": True})

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
