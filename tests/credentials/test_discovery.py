"""auth.issuer: metadata found (OIDC, RFC 8414 with path insertion), checked, applied; bad documents refused."""

from __future__ import annotations

import io

import pytest

from authproxy.cli.discover import run_discover
from authproxy.config.load import parse_config
from authproxy.credentials.discovery import DiscoveryCache, DiscoveryError, discover, metadata_urls
from authproxy.errors import ConfigError
from tests.fakes import make_route
from tests.fakes.idp import OIDC, FakeIdp
from tests.fakes.token_server import Reply


@pytest.fixture
def idp(server) -> FakeIdp:
    return FakeIdp(server)


def route_for(idp: FakeIdp, **auth):
    auth.setdefault("grant", "client_credentials")
    auth.setdefault("client_id", "cid")
    auth.setdefault("client_secret", "SENTINEL-secret")
    return make_route("api", issuer=idp.issuer, **auth)


def test_metadata_locations_follow_oidc_and_rfc8414_path_insertion() -> None:
    assert metadata_urls("https://idp.example.com") == [
        "https://idp.example.com/.well-known/openid-configuration",
        "https://idp.example.com/.well-known/oauth-authorization-server",
    ]
    assert metadata_urls("https://idp.example.com/tenant/a/") == [
        "https://idp.example.com/tenant/a/.well-known/openid-configuration",
        "https://idp.example.com/.well-known/oauth-authorization-server/tenant/a",
        "https://idp.example.com/.well-known/openid-configuration/tenant/a",
    ]


async def test_oidc_document_fills_the_endpoints_and_explicit_keys_win(idp, transport) -> None:
    idp.serve_oidc()
    base = idp.server.base_url
    found = await discover(route_for(idp, revocation_url="https://revoke.example/r"), transport)
    assert found.url == idp.issuer + OIDC
    auth = found.auth
    assert (auth.token_url, auth.authorize_url, auth.device_authorization_url) == (
        f"{base}/token",
        f"{base}/authorize",
        f"{base}/device",
    )
    assert auth.revocation_url == "https://revoke.example/r"
    assert [(f.kind, f.key) for f in found.findings] == [
        ("filled", "token_url"),
        ("filled", "authorize_url"),
        ("kept", "revocation_url"),
        ("filled", "device_authorization_url"),
    ]
    assert [r.method for r in idp.server.requests] == ["GET"]
    assert idp.server.requests[0].headers["Accept"] == "application/json"


async def test_rfc8414_path_insertion_after_oidc_is_missing(server, transport) -> None:
    idp = FakeIdp(server, issuer_path="/tenant")
    idp.documents["/.well-known/oauth-authorization-server/tenant"] = Reply(json=idp.document())
    found = await discover(route_for(idp), transport)
    assert found.url == f"{server.base_url}/.well-known/oauth-authorization-server/tenant"
    assert [r.path for r in server.requests] == [
        "/tenant/.well-known/openid-configuration",
        "/.well-known/oauth-authorization-server/tenant",
    ]
    assert found.auth.token_url == f"{server.base_url}/token"


async def test_unsupported_client_auth_and_pkce_are_findings(idp, transport) -> None:
    idp.serve_oidc(
        token_endpoint_auth_methods_supported=["private_key_jwt"], code_challenge_methods_supported=["plain"]
    )
    found = await discover(route_for(idp, grant="authorization_code"), transport)
    unsupported = [(f.key, f.message) for f in found.findings if f.kind == "unsupported"]
    assert [key for key, _ in unsupported] == ["client_auth", "code_challenge_methods_supported"]
    assert "routes.api.auth.client_auth client_secret_basic is not among" in unsupported[0][1]
    assert "(private_key_jwt)" in unsupported[0][1]


@pytest.mark.parametrize(
    ("document", "key", "words"),
    [
        (Reply.html(status=200), None, "the answer is not JSON (content-type text/html)"),
        (Reply(json=["not", "an", "object"]), None, "the answer is JSON but not an object"),
        ("no_token", "token_endpoint", "the document has no token_endpoint; set routes.api.auth.token_url"),
        ("wrong_issuer", "issuer", "is not routes.api.auth.issuer"),
        ("bad_url", "token_endpoint", "token_endpoint is not an http(s) URL: 'javascript:alert(1)'"),
        (Reply(status=500, json={}), None, "HTTP 500 (content-type application/json"),
    ],
)
async def test_malformed_documents_name_the_url_and_the_key(idp, transport, document, key, words) -> None:
    overrides = {
        "no_token": {"token_endpoint": None},
        "wrong_issuer": {"issuer": "https://evil.example"},
        "bad_url": {"token_endpoint": "javascript:alert(1)"},
    }
    if isinstance(document, str):
        document = Reply(json=idp.document(**overrides[document]))
    idp.documents[OIDC] = document
    with pytest.raises(DiscoveryError) as caught:
        await discover(route_for(idp), transport)
    assert caught.value.key == key
    assert caught.value.message.startswith(f"discovery at {idp.issuer}{OIDC} failed: ")
    assert words in caught.value.message
    assert "SENTINEL" not in caught.value.message


async def test_no_document_anywhere_lists_what_was_tried(idp, transport) -> None:
    with pytest.raises(DiscoveryError) as caught:
        await discover(route_for(idp), transport)
    base = idp.server.base_url
    assert caught.value.reason == (
        f"no metadata document found (tried {base}{OIDC}, {base}/.well-known/oauth-authorization-server); "
        "check auth.issuer"
    )
    assert len(idp.server.requests) == 2


def test_a_route_with_an_issuer_needs_no_token_url_but_one_without_does() -> None:
    raw = """
routes:
  a: {upstream: "https://api.example.com", auth: {grant: authorization_code, issuer: "https://idp.example.com",
      client_id: c, client_secret: s}}
"""
    config = parse_config(raw, env={})
    assert config.routes["a"].auth.issuer == "https://idp.example.com"
    with pytest.raises(ConfigError) as caught:
        parse_config(raw.replace('issuer: "https://idp.example.com",', ""), env={})
    assert (
        "routes.a.auth.token_url",
        "required for grant authorization_code (or set routes.a.auth.issuer to discover it)",
    ) in caught.value.problems
    with pytest.raises(ConfigError) as caught:
        parse_config(raw.replace("https://idp.example.com", "idp.example.com"), env={})
    assert [p for p, _ in caught.value.problems] == ["routes.a.auth.issuer"]


async def test_discover_command_prints_what_it_found(idp, transport) -> None:
    idp.serve_oidc(token_endpoint_auth_methods_supported=["client_secret_post"])
    out = io.StringIO()
    assert await run_discover(route_for(idp), transport=transport, out=out) == 0
    base = idp.server.base_url
    assert out.getvalue().splitlines() == [
        f"route api: issuer {idp.issuer}",
        f"metadata: {idp.issuer}{OIDC}",
        f"  filled   routes.api.auth.token_url = {base}/token (from token_endpoint)",
        f"  filled   routes.api.auth.authorize_url = {base}/authorize (from authorization_endpoint)",
        f"  filled   routes.api.auth.revocation_url = {base}/revoke (from revocation_endpoint)",
        f"  filled   routes.api.auth.device_authorization_url = {base}/device (from device_authorization_endpoint)",
        "  warning  routes.api.auth.client_auth client_secret_basic is not among the server's "
        "token_endpoint_auth_methods_supported (client_secret_post); set routes.api.auth.client_auth to one of them",
    ]
    idp.documents[OIDC] = Reply.html(status=200)
    out = io.StringIO()
    assert await run_discover(route_for(idp), transport=transport, out=out) == 1
    assert out.getvalue() == (
        f"route api: discovery at {idp.issuer}{OIDC} failed: the answer is not JSON (content-type text/html)\n"
    )


async def test_the_cache_fetches_once_and_again_after_an_unusable_document_or_a_clear(idp, transport) -> None:
    cache = DiscoveryCache()
    idp.serve_oidc(issuer="https://evil.example")
    with pytest.raises(DiscoveryError):
        await cache.resolve(route_for(idp), transport)
    idp.serve_oidc()  # fixed at the provider
    for _ in range(3):
        assert (await cache.resolve(route_for(idp), transport)).auth.token_url == f"{idp.server.base_url}/token"
    assert len(idp.requests_to(OIDC)) == 2
    cache.clear()
    await cache.resolve(route_for(idp), transport)
    assert len(idp.requests_to(OIDC)) == 3
