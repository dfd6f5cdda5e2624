"""RFC 7523 client assertions, verified by the token server with the public key."""

from __future__ import annotations

import sys
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from authproxy.credentials.build import build_credential
from authproxy.errors import ConfigError
from authproxy.stores.memory import MemoryStore
from tests.fakes import RecordedRequest, Reply, TokenServer, make_route

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"


@pytest.fixture(scope="module")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def pem(key: Any) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


def verifying(server: TokenServer, key: Any, algorithm: str, audience: str, claims: list[dict[str, Any]]):
    """A server-side handler that accepts only a correctly signed assertion."""

    def handler(request: RecordedRequest) -> Reply:
        params = request.params
        if params.get("client_assertion_type") != ASSERTION_TYPE:
            return Reply.error("invalid_client", status=401)
        try:
            decoded = jwt.decode(
                params["client_assertion"],
                key,
                algorithms=[algorithm],
                audience=audience,
                options={"verify_exp": False, "verify_iat": False},
            )  # fake clock is in 2023
        except jwt.InvalidTokenError:
            return Reply.error("invalid_client", status=401)
        claims.append({"header": jwt.get_unverified_header(params["client_assertion"]), **decoded})
        return server.issue(request)

    return handler


async def test_private_key_jwt_assertion(server, transport, clock, rsa_key) -> None:
    claims: list[dict[str, Any]] = []
    server.default = verifying(server, rsa_key.public_key(), "RS256", server.url, claims)
    route = make_route(
        grant="client_credentials",
        token_url=server.url,
        client_auth="private_key_jwt",
        client_id="svc-1",
        private_key=pem(rsa_key),
        key_id="key-7",
        scope="read",
    )
    cred = build_credential(route, transport=transport, store=MemoryStore(), clock=clock)
    first = await cred.current()
    assert (await cred.refresh(first)).access_token == "at-2"
    assert len(claims) == 2
    for claim in claims:
        assert (claim["iss"], claim["sub"], claim["aud"]) == ("svc-1", "svc-1", server.url)
        assert claim["iat"] == int(clock.now()) and claim["exp"] == claim["iat"] + 60
        assert claim["header"]["kid"] == "key-7" and claim["header"]["alg"] == "RS256"
    assert claims[0]["jti"] != claims[1]["jti"]
    params = server.requests[0].params
    assert set(params) == {"grant_type", "client_assertion_type", "client_assertion", "scope"}
    assert "Authorization" not in server.requests[0].headers


async def test_es256_is_picked_for_ec_keys_and_audience_can_be_set(server, transport, clock) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    claims: list[dict[str, Any]] = []
    server.default = verifying(server, key.public_key(), "ES256", "https://issuer.example", claims)
    route = make_route(
        grant="client_credentials",
        token_url=server.url,
        client_auth="private_key_jwt",
        client_id="svc",
        private_key=pem(key),
        assertion_audience="https://issuer.example",
    )
    await build_credential(route, transport=transport, store=MemoryStore(), clock=clock).current()
    assert claims[0]["aud"] == "https://issuer.example" and "kid" not in claims[0]["header"]


async def test_client_secret_jwt_signs_with_the_secret(server, transport, clock) -> None:
    claims: list[dict[str, Any]] = []
    server.default = verifying(server, b"shared-secret-of-32-bytes-length!", "HS256", server.url, claims)
    route = make_route(
        grant="client_credentials",
        token_url=server.url,
        client_auth="client_secret_jwt",
        client_id="svc",
        client_secret="shared-secret-of-32-bytes-length!",
    )
    await build_credential(route, transport=transport, store=MemoryStore(), clock=clock).current()
    assert claims[0]["iss"] == "svc"
    assert "shared-secret" not in server.requests[0].body.decode()


def test_bad_key_is_a_config_error_without_the_key(transport, clock) -> None:
    route = make_route(
        grant="client_credentials",
        token_url="http://t/",
        client_auth="private_key_jwt",
        client_id="svc",
        private_key="-----BEGIN PRIVATE KEY-----\nSENTINEL\n-----END PRIVATE KEY-----",
    )
    with pytest.raises(ConfigError) as err:
        build_credential(route, transport=transport, store=MemoryStore(), clock=clock)
    assert "routes.api.auth.private_key" in str(err.value) and "SENTINEL" not in str(err.value)


@pytest.mark.parametrize(
    ("method", "alg"), [("private_key_jwt", "ES256"), ("private_key_jwt", "HS256"), ("client_secret_jwt", "HS1")]
)
def test_an_algorithm_that_cannot_sign_is_a_config_error(transport, clock, rsa_key, method, alg) -> None:
    key = {"private_key": pem(rsa_key)} if method == "private_key_jwt" else {"client_secret": "s" * 32}
    route = make_route(
        grant="client_credentials", token_url="http://t/", client_auth=method, client_id="svc", assertion_alg=alg, **key
    )
    with pytest.raises(ConfigError) as err:
        build_credential(route, transport=transport, store=MemoryStore(), clock=clock)
    assert [p for p, _ in err.value.problems] == ["routes.api.auth.assertion_alg"]
    assert "PRIVATE KEY" not in str(err.value) and "s" * 32 not in str(err.value)


def test_missing_jwt_extra_says_what_to_install(transport, clock, rsa_key, monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "jwt", None)  # as if PyJWT were not installed
    route = make_route(
        grant="client_credentials",
        token_url="http://t/",
        client_auth="private_key_jwt",
        client_id="svc",
        private_key=pem(rsa_key),
    )
    with pytest.raises(ConfigError) as err:
        build_credential(route, transport=transport, store=MemoryStore(), clock=clock)
    assert "pip install 'authproxy[jwt]'" in str(err.value)
