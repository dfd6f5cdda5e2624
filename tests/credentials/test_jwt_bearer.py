"""grant jwt_bearer (RFC 7523 §2.1) against a token endpoint that verifies every assertion like Google does."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from authproxy.config.load import load_config
from authproxy.credentials.build import build_credential
from authproxy.errors import ConfigError
from authproxy.stores.memory import MemoryStore
from tests.fakes import make_route
from tests.fakes.assertion_grant import GRANT_TYPE, AssertionGrant, pem, service_account_key

SCOPE = "https://www.googleapis.com/auth/devstorage.read_only"
EMAIL = "reporter@demo-project.iam.gserviceaccount.com"
KID = "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture(scope="module")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def write_key(tmp_path: Path, data: dict[str, Any]) -> str:
    file = tmp_path / "sa.json"
    file.write_text(json.dumps(data))
    return str(file)


def google_config(tmp_path: Path, key_file: str, upstream: str, token_url: str) -> Path:
    config = tmp_path / "authproxy.yaml"
    config.write_text(
        "routes:\n"
        "  gcs:\n"
        "    preset: google-service-account\n"
        f"    upstream: {upstream}\n"
        f"    auth: {{service_account_file: {key_file}, scope: '{SCOPE}', token_url: '{token_url}'}}\n"
    )
    return config


async def test_service_account_file_signs_what_google_checks(server, transport, clock, rsa_key, tmp_path) -> None:
    grant = AssertionGrant(server, rsa_key.public_key(), issuer=EMAIL, audience=server.url, scope=SCOPE, key_id=KID)
    server.default = grant
    key_file = write_key(tmp_path, service_account_key(rsa_key, server.url))
    route = load_config(google_config(tmp_path, key_file, "https://storage.googleapis.com", server.url)).routes["gcs"]
    cred = build_credential(route, transport=transport, store=MemoryStore(), clock=clock)
    assert (await cred.current()).access_token == "at-1"
    [request] = server.requests
    assert set(request.params) == {"grant_type", "assertion"}  # scope rides in the assertion; no client auth
    assert request.params["grant_type"] == GRANT_TYPE and "Authorization" not in request.headers
    [claims] = grant.accepted
    assert claims["header"] == {"alg": "RS256", "typ": "JWT", "kid": KID}
    assert (claims["iss"], claims["sub"], claims["aud"], claims["scope"]) == (EMAIL, EMAIL, server.url, SCOPE)
    assert (claims["iat"], claims["exp"]) == (int(clock.now()), int(clock.now()) + 3600)
    # an hour later the token is due: a fresh assertion (new jti, new iat) is accepted, the old one would not be
    await clock.advance(3600)
    assert (await cred.current()).access_token == "at-2"
    assert grant.refusals == [] and len(grant.accepted) == len(server.requests) == 2
    assert grant.accepted[0]["jti"] != grant.accepted[1]["jti"]
    assert grant.accepted[1]["iat"] == int(clock.now()) == grant.accepted[0]["iat"] + 3600
    await cred.close()


async def test_the_fake_refuses_replayed_and_expired_assertions(server, clock, rsa_key, client) -> None:
    """The endpoint the tests use is strict: a replayed jti, an expired or over-long assertion are refused."""
    grant = AssertionGrant(server, rsa_key.public_key(), issuer="svc", audience=server.url)
    server.default = grant
    now = int(clock.now())

    def signed(**claims: Any) -> str:
        base = {"iss": "svc", "sub": "svc", "aud": server.url, "iat": now, "exp": now + 600, "jti": "j-1"}
        return jwt.encode({**base, **claims}, rsa_key, algorithm="RS256")

    async def post(assertion: str) -> tuple[int, dict[str, Any]]:
        form = {"grant_type": GRANT_TYPE, "assertion": assertion}
        async with client.post(server.url, data=form) as response:
            return response.status, await response.json()

    assert (await post(signed()))[0] == 200
    assert await post(signed()) == (
        400,
        {"error": "invalid_grant", "error_description": "assertion replayed (jti seen before)"},
    )
    assert (await post(signed(jti="j-2", iat=now - 900, exp=now - 300)))[1]["error_description"] == (
        "assertion expired (or issued in the future)"
    )
    assert (await post(signed(jti="j-3", exp=now + 3601)))[1]["error_description"] == (
        "exp must be at most an hour after iat"
    )
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    forged = jwt.encode(
        {"iss": "svc", "sub": "svc", "aud": server.url, "iat": now, "exp": now + 60, "jti": "j-4"},
        other,
        algorithm="RS256",
    )
    assert (await post(forged))[1]["error_description"] == "bad assertion: InvalidSignatureError"
    assert len(grant.accepted) == 1


async def test_es256_key_with_explicit_issuer_subject_and_audience(server, transport, clock) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    grant = AssertionGrant(
        server,
        key.public_key(),
        issuer="svc-7",
        subject="alice@example.com",
        audience="https://as.example",
        scope="read write",
        algorithm="ES256",
    )
    server.default = grant
    route = make_route(
        grant="jwt_bearer",
        token_url=server.url,
        client_auth="none",
        client_id="svc-7",
        assertion_subject="alice@example.com",
        assertion_audience="https://as.example",
        private_key=pem(key),
        scope="read write",
        audience="api-x",
    )
    cred = build_credential(route, transport=transport, store=MemoryStore(), clock=clock)
    assert (await cred.current()).access_token == "at-1"
    assert grant.refusals == []
    assert grant.accepted[0]["header"]["alg"] == "ES256"
    params = server.requests[0].params
    assert params["client_id"] == "svc-7" and params["audience"] == "api-x" and "scope" not in params
    await cred.close()


async def test_proxying_through_a_service_account_route_injects_the_token(
    make_proxy, upstream, client, server, clock, rsa_key, tmp_path
) -> None:
    server.default = AssertionGrant(server, rsa_key.public_key(), issuer=EMAIL, audience=server.url, scope=SCOPE)
    key_file = write_key(tmp_path, service_account_key(rsa_key, server.url))
    config = google_config(tmp_path, key_file, upstream.url, server.url).read_text()
    proxy = await make_proxy(config, clock=clock)
    async with client.get(proxy.at("/gcs/storage/v1/b?project=demo")) as response:
        assert response.status == 200, await response.text()
    [seen] = upstream.seen
    assert seen.headers["Authorization"] == "Bearer at-1"
    assert seen.raw_path == "/storage/v1/b?project=demo"
    assert len(server.requests) == 1
    async with client.get(proxy.at("/-/status")) as response:
        status = await response.text()
    assert "BEGIN PRIVATE KEY" not in status and pem(rsa_key).splitlines()[1] not in status


def test_a_symmetric_algorithm_is_refused(transport, clock, rsa_key) -> None:
    route = make_route(
        grant="jwt_bearer",
        token_url="http://127.0.0.1:9/t",
        client_auth="none",
        client_id="svc",
        private_key=pem(rsa_key),
        assertion_alg="HS256",
    )
    with pytest.raises(ConfigError) as err:
        build_credential(route, transport=transport, store=MemoryStore(), clock=clock)
    assert err.value.problems == [
        ("routes.api.auth.assertion_alg", "grant jwt_bearer signs with the private key; not HS256")
    ]


async def test_an_empty_private_key_leaves_the_route_not_configured(make_proxy, upstream, client) -> None:
    config = (
        "routes:\n  svc:\n"
        f"    upstream: {upstream.url}\n"
        "    auth: {grant: jwt_bearer, token_url: 'http://127.0.0.1:9/token', client_auth: none, client_id: svc,\n"
        "           private_key: '${SVC_KEY:-}'}\n"
    )
    proxy = await make_proxy(config)
    async with client.get(proxy.at("/svc/x")) as response:
        body = await response.json()
    assert response.status == 503 and body["error"]["code"] == "not_configured"
    assert "routes.svc.auth.private_key is empty" in body["error"]["message"]
    assert upstream.seen == []
