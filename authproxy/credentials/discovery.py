"""`auth.issuer`: fill a route's endpoints from the authorization server's own metadata.

OpenID Connect Discovery (`ISSUER/.well-known/openid-configuration`) is tried first, since the
identity providers people point authproxy at (Auth0, Okta, Entra, Keycloak) all serve it; then
RFC 8414 (`/.well-known/oauth-authorization-server` inserted before the issuer's path, §3.1), then
the OIDC document at the RFC 8414-style inserted location. The document must name the configured
issuer exactly (RFC 8414 §3.3, OIDC Discovery §4.3): otherwise it could send tokens elsewhere.

Keys given explicitly win over the document. `discover` is what `authproxy discover` and `check
--online` use; `DiscoveryCache` is what a running proxy uses (one fetch per issuer, forgotten on
reload). Errors name the URL and the key; none holds a secret (the request carries none).
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any

from multidict import CIMultiDict
from yarl import URL

from authproxy.config.schema import AuthConfig, RouteConfig
from authproxy.credentials.endpoint import USER_AGENT
from authproxy.upstream.egress import EgressPolicy
from authproxy.upstream.tls import TlsSettings
from authproxy.upstream.transport import Endpoint, Transport, TransportError, UpstreamTimeoutError

OIDC_SUFFIX = "/.well-known/openid-configuration"
RFC8414_PREFIX = "/.well-known/oauth-authorization-server"
MAX_DOCUMENT_BYTES = 512 * 1024
TIMEOUT = 15.0
# document key -> auth key it fills
FILLS = (
    ("token_endpoint", "token_url"),
    ("authorization_endpoint", "authorize_url"),
    ("revocation_endpoint", "revocation_url"),
    ("device_authorization_endpoint", "device_authorization_url"),
)


class DiscoveryError(Exception):
    """The metadata could not be fetched or used; `message` names the URL and, where one is at fault, the key."""

    def __init__(self, url: str, reason: str, *, key: str | None = None) -> None:
        self.url, self.reason, self.key = url, reason, key
        self.message = f"discovery at {url} failed: {reason}"
        super().__init__(self.message)


@dataclass(frozen=True, slots=True)
class Finding:
    """One thing discovery learned: `filled` (a key taken from the document), `kept` (an explicit key
    that differs from the document), `unsupported` (the server does not advertise what the route uses)
    or `note`."""

    kind: str
    key: str
    message: str


@dataclass(frozen=True, slots=True)
class Discovery:
    url: str  # the document that answered
    metadata: dict[str, Any]
    auth: AuthConfig  # the route's auth with the endpoints filled in
    findings: list[Finding] = field(default_factory=list)


def metadata_urls(issuer: str) -> list[str]:
    """Where the metadata of `issuer` may be, in the order they are tried."""
    base = URL(issuer.rstrip("/"))
    path = base.path.rstrip("/")
    origin = str(base.origin())
    urls = [str(base) + OIDC_SUFFIX, origin + RFC8414_PREFIX + path]
    if path:  # OIDC at the RFC 8414-style location (some servers publish it there)
        urls.append(origin + OIDC_SUFFIX + path)
    return list(dict.fromkeys(urls))


async def fetch_metadata(
    issuer: str, transport: Transport, *, tls: TlsSettings | None = None, egress: EgressPolicy | None = None
) -> tuple[str, dict[str, Any]]:
    """The first metadata document found for `issuer`: (its URL, the parsed object).

    A 404 (or 400/405/410) moves on to the next location; anything else that is not a JSON object
    is an error naming the URL.
    """
    last: DiscoveryError | None = None
    for url in metadata_urls(issuer):
        status, content_type, raw = await _get(url, transport, tls, egress)
        if status in (400, 404, 405, 410):
            last = DiscoveryError(url, f"HTTP {status} (no metadata document there)")
            continue
        shown = content_type.split(";")[0].strip() or "none"
        if status != 200:
            raise DiscoveryError(url, f"HTTP {status} (content-type {shown})")
        try:
            document = json.loads(raw)
        except (ValueError, UnicodeDecodeError, RecursionError):
            raise DiscoveryError(url, f"the answer is not JSON (content-type {shown})") from None
        if not isinstance(document, dict):
            raise DiscoveryError(url, "the answer is JSON but not an object")
        return url, document
    assert last is not None
    tried = ", ".join(metadata_urls(issuer))
    raise DiscoveryError(last.url, f"no metadata document found (tried {tried}); check auth.issuer")


def apply_metadata(auth: AuthConfig, url: str, metadata: dict[str, Any], *, where: str) -> Discovery:
    """Check `metadata` against the route and fill the endpoints the route did not set explicitly."""
    issuer = metadata.get("issuer")
    configured = (auth.issuer or "").rstrip("/")
    if not isinstance(issuer, str) or issuer.rstrip("/") != configured:
        raise DiscoveryError(
            url,
            f"the document's issuer {issuer!r} is not {where}.issuer {auth.issuer!r}; set {where}.issuer to "
            "exactly the issuer the server names (a mismatch could send credentials to another server)",
            key="issuer",
        )
    findings: list[Finding] = []
    filled: dict[str, str] = {}
    for doc_key, auth_key in FILLS:
        value = metadata.get(doc_key)
        if value is not None and not _http_url(value):
            raise DiscoveryError(url, f"{doc_key} is not an http(s) URL: {str(value)[:100]!r}", key=doc_key)
        explicit = getattr(auth, auth_key)
        if explicit is not None:
            if value is not None and value != explicit:
                findings.append(Finding("kept", auth_key, f"{where}.{auth_key} is set, so {doc_key} {value} is unused"))
            continue
        if value is not None:
            filled[auth_key] = value
            findings.append(Finding("filled", auth_key, f"{where}.{auth_key} = {value} (from {doc_key})"))
    resolved = dataclasses.replace(auth, **filled)
    if auth.grant not in ("none", "static") and resolved.token_url is None:
        raise DiscoveryError(
            url, f"the document has no token_endpoint; set {where}.token_url explicitly", key="token_endpoint"
        )
    findings += _support(resolved, metadata, where)
    return Discovery(url, metadata, resolved, findings)


def _support(auth: AuthConfig, metadata: dict[str, Any], where: str) -> list[Finding]:
    """What the route uses that the server does not advertise (RFC 8414 defaults when a list is absent)."""
    findings = []
    methods = metadata.get("token_endpoint_auth_methods_supported", ["client_secret_basic"])
    if isinstance(methods, list) and auth.client_auth not in methods:
        shown = ", ".join(str(m) for m in methods[:8])
        findings.append(
            Finding(
                "unsupported",
                "client_auth",
                f"{where}.client_auth {auth.client_auth} is not among the server's token_endpoint_auth_methods_"
                f"supported ({shown}); set {where}.client_auth to one of them",
            )
        )
    uses_pkce = auth.grant == "authorization_code" and auth.login == "browser"
    challenge = metadata.get("code_challenge_methods_supported")
    if uses_pkce and isinstance(challenge, list) and "S256" not in challenge:
        findings.append(
            Finding(
                "unsupported",
                "code_challenge_methods_supported",
                "the server does not list PKCE S256 in code_challenge_methods_supported; `authproxy login` sends "
                "it anyway (servers that do not know PKCE ignore it)",
            )
        )
    elif uses_pkce and challenge is None:
        findings.append(Finding("note", "code_challenge_methods_supported", "the server does not advertise PKCE"))
    if auth.login == "device" and auth.device_authorization_url is None:
        findings.append(
            Finding(
                "unsupported",
                "device_authorization_endpoint",
                f"no device_authorization_endpoint in the document; set {where}.device_authorization_url",
            )
        )
    return findings


async def discover(route: RouteConfig, transport: Transport, egress: EgressPolicy | None = None) -> Discovery:
    """Fetch the route's metadata and apply it: for the CLI and `check --online`. Raises DiscoveryError."""
    where = f"routes.{route.name}.auth"
    if not route.auth.issuer:
        raise DiscoveryError("(none)", f"{where}.issuer is not set", key="issuer")
    url, metadata = await fetch_metadata(route.auth.issuer, transport, tls=_tls(route), egress=egress)
    return apply_metadata(route.auth, url, metadata, where=where)


def needs_discovery(route: RouteConfig) -> bool:
    """A route with an issuer and an endpoint still to fill."""
    auth = route.auth
    return bool(auth.issuer) and any(getattr(auth, key) is None for _, key in FILLS)


class DiscoveryCache:
    """A running proxy's metadata, one fetch per issuer (shared by its routes), forgotten on reload."""

    def __init__(self) -> None:
        self._documents: dict[str, tuple[str, dict[str, Any]]] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self.generation = 0  # bumped by clear(): what was resolved before is resolved again

    def clear(self) -> None:
        self._documents.clear()
        self.generation += 1

    async def resolve(self, route: RouteConfig, transport: Transport, egress: EgressPolicy | None = None) -> Discovery:
        """The route's auth with its endpoints filled, fetching the issuer's document if not cached."""
        issuer = route.auth.issuer or ""
        async with self._locks.setdefault(issuer, asyncio.Lock()):
            cached = self._documents.get(issuer)
            if cached is None:
                cached = self._documents[issuer] = await fetch_metadata(
                    issuer, transport, tls=_tls(route), egress=egress
                )
            try:
                return apply_metadata(route.auth, *cached, where=f"routes.{route.name}.auth")
            except DiscoveryError:
                self._documents.pop(issuer, None)  # an unusable document is fetched again at the next try
                raise

    async def route(self, route: RouteConfig, transport: Transport, egress: EgressPolicy | None = None) -> RouteConfig:
        """`route` itself when it needs no discovery, else a copy with the discovered endpoints."""
        if not needs_discovery(route):
            return route
        return dataclasses.replace(route, auth=(await self.resolve(route, transport, egress)).auth)


def _tls(route: RouteConfig) -> TlsSettings | None:
    """The route's TLS settings when the issuer is the upstream's own origin, else the system's CAs."""
    if URL(route.auth.issuer or "").origin() == URL(route.upstream).origin():
        return TlsSettings.from_config(route.tls, f"routes.{route.name}.tls")
    return None


def _http_url(value: Any) -> bool:
    try:
        return isinstance(value, str) and URL(value).scheme in ("http", "https") and bool(URL(value).host)
    except ValueError:
        return False


async def _get(
    url: str, transport: Transport, tls: TlsSettings | None, egress: EgressPolicy | None = None
) -> tuple[int, str, bytes]:
    """GET `url` (no redirects followed): (status, content type, body up to MAX_DOCUMENT_BYTES)."""
    parsed = URL(url)
    endpoint = Endpoint(parsed, tls, egress=egress.choose(parsed).egress if egress is not None else None)
    headers = CIMultiDict({"Accept": "application/json", "User-Agent": USER_AGENT})
    try:
        async with asyncio.timeout(TIMEOUT):
            response = await transport.request(
                endpoint, "GET", parsed.raw_path_qs or "/", headers, None, connect_timeout=10.0, read_timeout=TIMEOUT
            )
            try:
                chunks, size = [], 0
                async for chunk in response.chunks():
                    chunks.append(chunk)
                    size += len(chunk)
                    if size > MAX_DOCUMENT_BYTES:
                        raise DiscoveryError(url, f"the document is larger than {MAX_DOCUMENT_BYTES} bytes")
                return response.status, response.headers.get("Content-Type", ""), b"".join(chunks)
            finally:
                response.release()
    except (TimeoutError, UpstreamTimeoutError):
        raise DiscoveryError(url, f"no answer within {TIMEOUT:g}s") from None
    except TransportError as exc:
        raise DiscoveryError(url, f"cannot reach it ({exc})") from None
