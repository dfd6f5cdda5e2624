"""Cross-field checks of a parsed config: what no single key's type can say.

Each check adds (key path, how to fix it) to `Problems`, so every mistake is reported at once.
"""

from __future__ import annotations

import dataclasses
import difflib
import ipaddress
import re
from pathlib import Path

from yarl import URL

from authproxy.config.presets import mixed_sensitive_scopes
from authproxy.config.redis_url import parse_redis_url
from authproxy.config.schema import AuthConfig, Config, RouteConfig, split_listen

_USERINFO = re.compile(r"//[^/?#]*@")
_PREFIX = re.compile(r"^(/[A-Za-z0-9._~!$&'()*+,;=:@-]+)+$")


class Problems:
    """Collects (path, message) pairs while the whole config is walked."""

    def __init__(self) -> None:
        self.items: list[tuple[str, str]] = []

    def add(self, path: str, message: str) -> None:
        self.items.append((path, message))


class ConfigChecks:
    """Mixed into the loader's context; needs `self.problems`."""

    problems: Problems

    def check_listen(self, config: Config) -> None:
        try:
            host, _ = split_listen(config.listen)
        except ValueError:
            self.problems.add("listen", f"{config.listen!r} is not host:port; write e.g. 127.0.0.1:8080")
        else:
            if not is_loopback(host) and not config.allow_anonymous and not config.clients:
                self.problems.add(
                    "listen",
                    f"{host} is reachable from other machines, and anyone who can connect "
                    "would use these credentials; listen on 127.0.0.1, give each client a key under clients:, "
                    "or set allow_anonymous: true (only on a private network, e.g. a sidecar's pod)",
                )
        if config.admin.listen is not None:
            try:
                admin_host, _ = split_listen(config.admin.listen)
            except ValueError:
                self.problems.add(
                    "admin.listen", f"{config.admin.listen!r} is not host:port; write e.g. 127.0.0.1:9901"
                )
            else:
                if not is_loopback(admin_host) and not config.allow_anonymous:
                    self.problems.add(
                        "admin.listen",
                        f"{admin_host} is reachable from other machines; listen on "
                        "127.0.0.1, or set allow_anonymous: true (only on a private network)",
                    )

    def check_team(self, config: Config, routes: dict[str, RouteConfig]) -> None:
        for name, client in config.clients.items():
            path = f"clients.{name}"
            if (client.key is None) == (client.key_sha256 is None):
                self.problems.add(path, "give exactly one of key (or key_file) and key_sha256")
            if client.key_sha256 is not None and not re.fullmatch(r"[0-9a-fA-F]{64}", client.key_sha256):
                self.problems.add(f"{path}.key_sha256", "expected 64 hex digits: printf %s KEY | sha256sum")
            if client.key is not None and len(client.key) < 16:
                self.problems.add(
                    f"{path}.key", "too short to be a secret: use at least 16 characters, e.g. `openssl rand -hex 24`"
                )
            for route in client.routes:
                if route != "*" and route not in routes:
                    self.problems.add(f"{path}.routes", unknown(route, ["*", *routes], "route"))
            for method in client.methods:
                if method != "*" and not re.fullmatch(r"[A-Z]+", method):
                    self.problems.add(f"{path}.methods", f"{method!r} is not an HTTP method; write e.g. GET")
        for route in config.trace:
            if route != "all" and route not in routes:
                self.problems.add("trace", unknown(route, ["all", *routes], "route"))
        if config.console.capture_bodies is not None and not 0 < config.console.capture_bodies <= 64:
            # bounded memory: console.requests x 2 bodies x this (200 x 2 x 64 KiB = 25 MiB at most)
            self.problems.add("console.capture_bodies", "KiB of each body to keep: from 1 to 64, e.g. 16")
        if config.admin.key is not None and len(config.admin.key) < 16:
            self.problems.add("admin.key", "too short to be a secret: use at least 16 characters")

    def check_pair(self, cert: str | None, key: str | None, path: str) -> None:
        if (cert is None) != (key is None):
            self.problems.add(path, "give both cert_file and key_file")
        for name, file in (("cert_file", cert), ("key_file", key)):
            if file is not None and not is_file(file):
                self.problems.add(f"{path}.{name}", f"no such file: {file}")

    def check_store(self, config: Config) -> None:
        """The Redis URL's form (one server, Sentinel, Cluster) and the keys that go with it."""
        store = config.store
        mode = None
        if store.url is not None and store.kind == "redis":
            try:
                mode = parse_redis_url(store.url, sentinel_master=store.sentinel_master, cluster=store.cluster).mode
            except ValueError as exc:
                self.problems.add("store.url", str(exc))
        for key in ("sentinel_master", "sentinel_password", "cluster"):
            if getattr(store, key) and store.kind not in ("redis", "auto"):
                self.problems.add(f"store.{key}", "applies to kind: redis only; set kind: redis, or remove it")
        if store.sentinel_password and mode not in ("sentinel", None):
            self.problems.add(
                "store.sentinel_password",
                "is for Redis Sentinel only; use a redis+sentinel:// URL or set store.sentinel_master",
            )
        if mode == "cluster" and ("{" in store.key_prefix or "}" in store.key_prefix):
            self.problems.add(
                "store.key_prefix",
                "must not contain { or } with Redis Cluster: the keys' hash tag {<key>} keeps a credential in one slot",
            )

    def check_route(self, route: RouteConfig, path: str) -> RouteConfig:
        upstream = check_url(route.upstream, f"{path}.upstream", self.problems) if route.upstream else None
        prefix = route.prefix.rstrip("/") if route.prefix != "/" else "/"
        if prefix != "/" and not _PREFIX.match(prefix):
            self.problems.add(f"{path}.prefix", f"{route.prefix!r} is not a path prefix; write e.g. /{route.name}")
        elif prefix == "/-" or prefix.startswith("/-/"):
            self.problems.add(f"{path}.prefix", "/-/ is reserved for the admin endpoints; choose another prefix")
        if route.max_connections is not None and route.max_connections < 1:
            self.problems.add(f"{path}.max_connections", "must be at least 1 (or left out for a fair share)")
        for header in route.headers:
            if not re.fullmatch(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+", header):
                self.problems.add(f"{path}.headers.{header}", "not a valid HTTP header name")
        auth = self.check_auth(route.auth, upstream, f"{path}.auth")
        self.check_pair(route.tls.cert_file, route.tls.key_file, f"{path}.tls")
        if route.tls.ca_file is not None and not is_file(route.tls.ca_file):
            self.problems.add(f"{path}.tls.ca_file", f"no such file: {route.tls.ca_file}")
        return dataclasses.replace(route, prefix=prefix, auth=auth)

    def check_auth(self, auth: AuthConfig, upstream: URL | None, path: str) -> AuthConfig:
        needs: dict[str, tuple[str, ...]] = {
            "client_credentials": ("token_url",),
            "refresh_token": ("token_url",),
            "authorization_code": ("token_url", "authorize_url"),
            "static": ("token",),
            "jwt_bearer": ("token_url",),
            "token_exchange": ("token_url", "subject_token_file"),
        }
        for key in needs.get(auth.grant, ()):
            if key == "authorize_url" and auth.login == "device":
                continue  # a device login needs no authorize endpoint
            if getattr(auth, key) is None and not (key.endswith("_url") and auth.issuer is not None):
                hint = f" (or set {path}.issuer to discover it)" if key.endswith("_url") else ""
                self.problems.add(f"{path}.{key}", f"required for grant {auth.grant}{hint}")
        if auth.login == "device" and auth.grant != "authorization_code":
            self.problems.add(
                f"{path}.login",
                f"a device login stores a refresh token to renew from; set {path}.grant: authorization_code",
            )
        if auth.issuer is not None:
            check_url(auth.issuer, f"{path}.issuer", self.problems)
        if auth.grant == "jwt_bearer":
            self.check_jwt_bearer(auth, path)
        if auth.grant in ("client_credentials", "refresh_token", "authorization_code", "jwt_bearer", "token_exchange"):
            if auth.client_id is None and auth.client_auth != "none":
                hint = " (set client_auth: none when the token endpoint does not authenticate clients)"
                extra = hint if auth.grant in ("jwt_bearer", "token_exchange") else ""
                self.problems.add(f"{path}.client_id", f"required with client_auth {auth.client_auth}{extra}")
            if auth.client_secret is None and auth.client_auth in (
                "client_secret_basic",
                "client_secret_post",
                "client_secret_jwt",
            ):
                self.problems.add(
                    f"{path}.client_secret",
                    f"required with client_auth {auth.client_auth} (or set client_secret_file to read it from a file)",
                )
            if auth.private_key is None and auth.client_auth == "private_key_jwt":
                self.problems.add(
                    f"{path}.private_key",
                    "required with client_auth private_key_jwt (set private_key_file to a PEM file)",
                )
        resolved = {}
        for key in ("token_url", "authorize_url", "revocation_url", "device_authorization_url"):
            value = getattr(auth, key)
            if value is None:
                continue
            if value.startswith("/") and upstream is not None:
                resolved[key] = str(upstream.join(URL(value)))
            elif check_url(value, f"{path}.{key}", self.problems, relative_ok=True) is not None:
                resolved[key] = value
        if auth.redirect_uri is not None:  # `authproxy login` listens there (a bad port is not a URL either)
            check_url(auth.redirect_uri, f"{path}.redirect_uri", self.problems)
        return dataclasses.replace(auth, **resolved)

    def check_jwt_bearer(self, auth: AuthConfig, path: str) -> None:
        """RFC 7523 §2.1: the grant signs an assertion, so it needs a key and someone to be."""
        if auth.private_key is None and auth.service_account_file is None:
            self.problems.add(
                f"{path}.private_key",
                "grant jwt_bearer signs with a private key: set private_key_file to a PEM file, "
                "or service_account_file to a service-account JSON key",
            )
        if auth.assertion_issuer is None and auth.client_id is None and auth.service_account_file is None:
            self.problems.add(
                f"{path}.assertion_issuer", "grant jwt_bearer needs an issuer (iss): set assertion_issuer or client_id"
            )

    def check_prefixes(self, routes: dict[str, RouteConfig]) -> None:
        seen: dict[str, str] = {}
        for name, route in routes.items():
            if route.prefix in seen:
                self.problems.add(
                    f"routes.{name}.prefix",
                    f"{route.prefix} is already served by route {seen[route.prefix]}; give one of them another prefix",
                )
            seen[route.prefix] = name


def scope_warnings(config: Config) -> list[str]:
    """Routes asking for a preset's sensitive scope together with others: one warning each, with the fix."""
    warnings = []
    for route in config.routes.values():
        sensitive, others = mixed_sensitive_scopes(route.preset, route.auth.scope)
        if sensitive:
            alone = " ".join(sensitive)
            warnings.append(
                f"routes.{route.name}.auth.scope asks for {alone} together with {' '.join(others)}: every request "
                f"on {route.prefix} then carries a token that can do what {alone} allows; give {alone} a route of "
                f"its own (e.g. {route.name}-{sensitive[0]}: {{preset: {route.preset}, auth: {{scope: {alone}}}}}) "
                "and keep it out of this one"
            )
    return warnings


def is_file(name: str) -> bool:
    """Whether `name` is a readable regular file; odd names (too long, ~nobody/...) just are not."""
    try:
        return Path(name).expanduser().is_file()
    except (OSError, RuntimeError, ValueError):
        return False


def is_loopback(host: str) -> bool:
    """True for addresses only this machine can reach (127.0.0.0/8, ::1, localhost)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_url(value: str, path: str, problems: Problems, relative_ok: bool = False) -> URL | None:
    try:
        url = URL(value)
    except ValueError:
        url = None
    if url is None or url.scheme not in ("http", "https") or not url.host:
        extra = " or a path like /oauth/token" if relative_ok else ""
        shown = _USERINFO.sub("//[redacted]@", value)  # a password in a URL is still a password
        problems.add(path, f"{shown!r} is not an http(s) URL; write e.g. https://api.example.com{extra}")
        return None
    if url.query_string or url.fragment:
        problems.add(path, "must not carry a query string or fragment")
    if url.user is not None or url.password is not None:
        problems.add(
            path,
            "must not carry a user or password; put credentials under auth: (client_id, client_secret) or headers:",
        )
    return url


def unknown(key: str, known: list[str], what: str) -> str:
    close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
    hint = f"did you mean {close[0]!r}? " if close else ""
    return f"unknown {what} {key!r}; {hint}expected one of: {', '.join(sorted(known))}"


def join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key
