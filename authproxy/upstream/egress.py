"""Which egress (forward) proxy an outbound request goes through, and where that choice came from.

The order, first that applies: the route's `egress_proxy.url`, the top-level `egress_proxy.url` (`none`: direct),
then, when that section's `from_env` is true (the default), HTTPS_PROXY / HTTP_PROXY for the target's scheme
(lower case first, as curl and Python's urllib read them). Hosts in `no_proxy` (the section's, else the
environment's NO_PROXY when from_env) go direct. Explicit config always wins over the environment, so a config
means the same on every machine; the environment is there for the common case of no config at all.

An `Egress` never shows its password: `shown` masks it, and it is the only form messages and /-/status use.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import unquote

from yarl import URL

from authproxy.config.masking import MASKED, egress_proxy_secrets
from authproxy.config.schema import Config, EgressProxyConfig, RouteConfig
from authproxy.errors import ConfigError
from authproxy.upstream.no_proxy import NoProxy

SUPPORTED = "http://host:port (plain HTTP to the proxy; https upstreams stay TLS end to end through CONNECT)"
ENV_PROXY = {"https": ("https_proxy", "HTTPS_PROXY"), "http": ("http_proxy", "HTTP_PROXY")}
ENV_NO_PROXY = ("no_proxy", "NO_PROXY")


NO_EGRESS = "no egress proxy configured or in the environment"  # the plain case: nothing to report


@dataclass(frozen=True, slots=True)
class Egress:
    """A forward proxy: where it is, the Proxy-Authorization it needs, and how to name it (password masked)."""

    host: str
    port: int
    shown: str  # http://user:********@host:port
    source: str  # the key or variable that set it: `routes.api.egress_proxy.url`, `env HTTPS_PROXY`
    authorization: str | None = field(default=None, repr=False)  # `Basic ...`
    credentials_from: str | None = None  # which key sets the credentials, for a 407's message

    @property
    def url(self) -> str:
        """The proxy's address without credentials (aiohttp's `proxy=`)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def unreachable(self, reason: str) -> str:
        return (
            f"cannot connect to the egress proxy {self.shown} (set by {self.source}): {reason}; check its address "
            "and that it runs, or send this host direct (no_proxy / NO_PROXY, or egress_proxy: {url: none})"
        )

    def refused(self, status: int, target: str) -> str:
        """The message for a refusal (`status` to CONNECT, or a 407 to a plain request) of `target` (host:port)."""
        if status in (401, 407):  # to CONNECT, a 401 is the proxy's too (tinyproxy answers wrong credentials so)
            if self.credentials_from is None:
                fix = (
                    f"it wants credentials and none are set: add egress_proxy.username and egress_proxy.password "
                    f"(or password_file), or user:password@ in {self.source}"
                )
            else:
                fix = f"the credentials set by {self.credentials_from} were refused; check them"
            return f"the egress proxy {self.shown} (set by {self.source}) answered {status} for {target}: {fix}"
        return (
            f"the egress proxy {self.shown} (set by {self.source}) refused to tunnel to {target} (HTTP {status}); "
            f"check that it allows CONNECT to port {target.rpartition(':')[2]} and this host (its ACL, e.g. "
            "tinyproxy's ConnectPort / Squid's SSL_ports), or send this host direct"
        )


@dataclass(frozen=True, slots=True)
class EgressChoice:
    """For one target: the egress, or None for direct, and why (for /-/status and `authproxy check`)."""

    egress: Egress | None
    reason: str

    def status(self) -> dict[str, str]:
        return {"via": self.egress.shown if self.egress else "direct", "from": self.reason}


class EgressPolicy:
    """A route's egress rules, checked once (ConfigError names the key or variable); `choose(url)` per target."""

    def __init__(self, config: Config, route: RouteConfig, environ: Mapping[str, str]) -> None:
        section, where = route.egress_proxy, f"routes.{route.name}.egress_proxy"
        if section is None:
            section, where = config.egress_proxy or EgressProxyConfig(), "egress_proxy"
        self.warnings: list[str] = []
        self._environ = environ if section.from_env else {}
        self._where = where
        self._configured: Egress | None = None
        self._direct = section.url is not None and section.url.strip().lower() == "none"
        if section.url is not None and not self._direct:
            self._configured = parse_egress(section.url, f"{where}.url", section.username, section.password, where)
        if section.no_proxy is not None:
            self.no_proxy, self.no_proxy_from = NoProxy(section.no_proxy), f"{where}.no_proxy"
            if self.no_proxy.invalid:
                raise ConfigError([(f"{where}.no_proxy", _bad_entries(self.no_proxy.invalid))])
        else:
            name, text = _env(self._environ, ENV_NO_PROXY)
            self.no_proxy, self.no_proxy_from = NoProxy(text), f"env {name}"
            if self.no_proxy.invalid:
                self.warnings.append(f"{name}: {_bad_entries(self.no_proxy.invalid)}; those entries are ignored")
        self._section = section
        self._from_env: dict[str, Egress | None] = {}

    def choose(self, url: URL) -> EgressChoice:
        """The egress for requests to `url` (its scheme picks the environment variable)."""
        if self._direct:
            return EgressChoice(None, f"{self._where}.url: none")
        egress = self._configured
        if egress is None:
            egress = self._env_egress(url.scheme)
            if egress is None:
                return EgressChoice(None, NO_EGRESS)
        port = url.port or (443 if url.scheme == "https" else 80)
        entry = self.no_proxy.match(url.raw_host or "", port)
        if entry is not None:
            return EgressChoice(None, f"{self.no_proxy_from} entry {entry!r}")
        return EgressChoice(egress, egress.source)

    def _env_egress(self, scheme: str) -> Egress | None:
        if scheme not in self._from_env:
            name, text = _env(self._environ, ENV_PROXY.get(scheme, ()))
            section = self._section
            self._from_env[scheme] = (
                parse_egress(text, f"env {name}", section.username, section.password, self._where) if text else None
            )
        return self._from_env[scheme]


def parse_egress(text: str, source: str, username: str | None, password: str | None, where: str) -> Egress:
    """An `Egress` from a proxy URL (`host:port` alone means http://); ConfigError names `source` and the fix."""
    value = text.strip()
    try:
        url = URL(value if "://" in value else "http://" + value)
    except ValueError:
        url = None
    if url is None or url.scheme != "http" or not url.raw_host:
        scheme = url.scheme if url is not None and url.scheme != "http" else None
        what = f"scheme {scheme}:// is not supported" if scheme else f"{_masked_text(value)!r} is not a proxy URL"
        raise ConfigError([(source, f"{what}; write {SUPPORTED}")])
    if url.raw_path not in ("", "/") or url.query_string:
        raise ConfigError([(source, f"a proxy URL has no path or query; write {SUPPORTED}")])
    try:
        port = url.port or 80
    except ValueError:
        raise ConfigError([(source, f"the port is not a number from 1 to 65535; write {SUPPORTED}")]) from None
    user, secret = (unquote(url.raw_user or ""), unquote(url.raw_password or "")) if url.raw_user else (None, None)
    credentials_from = f"the user:password in {source}" if user is not None else None
    if user is not None and (username or password):
        raise ConfigError([(source, f"give the credentials in the URL or in {where}.username/password, not both")])
    if user is None and (username or password):
        user, secret, credentials_from = username or "", password or "", f"{where}.username / {where}.password"
    authorization = None
    if user is not None:
        authorization = "Basic " + base64.b64encode(f"{user}:{secret}".encode()).decode()
    host = url.raw_host
    name = f"[{host}]" if ":" in host else host
    shown_user = f"{user}:{MASKED}@" if user is not None and secret else (f"{user}@" if user else "")
    return Egress(host, port, f"http://{shown_user}{name}:{port}", source, authorization, credentials_from)


def environment_secrets(environ: Mapping[str, str]) -> list[str]:
    """Passwords in the environment's proxy URLs, for the log redactor (the config's are in secret_values)."""
    found = []
    for names in ENV_PROXY.values():
        for name in names:
            value = environ.get(name) or ""
            if "@" in value:
                found.extend(egress_proxy_secrets(EgressProxyConfig(url=value)))
    return found


def _env(environ: Mapping[str, str], names: tuple[str, ...]) -> tuple[str, str]:
    """(the variable's name, its value): the first of `names` set to something, lower case first."""
    for name in names:
        value = environ.get(name, "").strip()
        if value:
            return name, value
    return (names[-1] if names else ""), ""


def _bad_entries(entries: list[str]) -> str:
    listed = ", ".join(repr(e) for e in entries)
    return (
        f"{listed} {'is' if len(entries) == 1 else 'are'} not a host name, IP address, CIDR range, host:port or *; "
        "write e.g. example.com, .corp.example, 10.0.0.0/8, localhost:8080"
    )


def _masked_text(value: str) -> str:
    _, at, tail = value.rpartition("@")
    return f"{MASKED}@{tail}" if at else value
