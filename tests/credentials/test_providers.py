"""Each provider's documented token request, reproduced exactly, against a recording server."""

from __future__ import annotations

import base64
import json
from urllib.parse import quote_plus

import pytest

from authproxy.credentials.build import build_credential
from authproxy.credentials.client_auth import basic_authorization
from authproxy.credentials.credential import Credential
from authproxy.credentials.identity import store_key
from authproxy.credentials.tokens import Token
from authproxy.stores.memory import MemoryStore
from authproxy.upstream.pool import NativeTransport
from tests.fakes import FixedRandom, Reply, TokenServer, make_route
from tests.fakes.clock import FakeClock

STONEX_JWT = (
    "eyJraWQiOiJiLU5iV2o4Tm5zUWJUMFRkRXFTWXlqMHNNUVhNVzBRb0JOY0s3bkJBY1FjIiwiYWxnIjoiUlMyNTYifQ."
    "eyJ2ZXIiOjEsImp0aSI6IkFULjB6bUpEOWJHX0tPUlVkQmRMcUs5XzRMeFpRdmdPWmlFdU10aTRxSmVieVEiLCJpc3MiOiJodHRwczovL2F1dG"
    "gucHJldmlldy5zdG9uZXguY29tL29hdXRoMi9hdXNmbHQ0bmpyYzlWZE82aTFkNyIsImF1ZCI6ImFwaTovL3BheW1lbnRzY29ubmVjdCIsImlh"
    "dCI6MTcyNTAyMzk2NSwiZXhwIjoxNzI1MDI3NTY1LCJjaWQiOiIwb2FmbHN4Z2d0S2dLTnlZVzFkNyIsInNjcCI6WyJjbGllbnRfY3JlZGVudG"
    "lhbHMiXSwic3ViIjoiMG9hZmxzeGdndEtnS055WVcxZDcifQ.sig"
)


@pytest.fixture
def build(transport: NativeTransport, store: MemoryStore, clock: FakeClock):
    def factory(**auth: object) -> Credential:
        cred = build_credential(
            make_route("api", **auth), transport=transport, store=store, clock=clock, rng=FixedRandom()
        )
        assert cred is not None
        return cred

    return factory


FORM = "application/x-www-form-urlencoded"


async def test_stockx_auth0_refresh_token_grant(server: TokenServer, build, store: MemoryStore, clock) -> None:
    server.script.append(
        Reply.token("ey.stockx", 43200, id_token="ey.id", scope="openid email offline_access", token_type="Bearer")
    )
    cred = build(
        grant="refresh_token",
        token_url=server.url,
        client_auth="client_secret_post",
        client_id="cid",
        client_secret="csecret",
        audience="gateway.stockx.com",
        refresh_token="rt-config",
    )
    token = await cred.current()
    [req] = server.requests
    assert (req.method, req.path, req.content_type) == ("POST", "/oauth/token", FORM)
    assert req.params == {
        "grant_type": "refresh_token",
        "client_id": "cid",
        "client_secret": "csecret",
        "audience": "gateway.stockx.com",
        "refresh_token": "rt-config",
    }
    assert req.headers["Accept"] == "application/json"
    assert "Authorization" not in req.headers
    assert token.access_token == "ey.stockx"
    assert token.expires_at == clock.now() + 43200
    assert token.refresh_token == "rt-config"  # Auth0 sends none back: keep the old one
    assert cred.headers(token) == {"Authorization": "Bearer ey.stockx"}
    assert await store.load(store_key("api")) == token


async def test_stex_basic_auth_authorization_code_refresh(server: TokenServer, build, store: MemoryStore) -> None:
    await store.save(store_key("api"), Token("old", expires_at=0.0, refresh_token="rt-stored"))
    server.script.append(Reply.token("stex-at", 3600, refresh_token="rt-new", token_type="bearer"))
    cred = build(
        grant="authorization_code",
        token_url=server.url,
        client_auth="client_secret_basic",
        client_id="42",
        client_secret="stex-secret",
        scope="trade profile",
    )
    token = await cred.current()
    [req] = server.requests
    assert req.params == {"grant_type": "refresh_token", "refresh_token": "rt-stored", "scope": "trade profile"}
    assert req.headers["Authorization"] == "Basic " + base64.b64encode(b"42:stex-secret").decode()
    assert req.basic_auth() == ("42", "stex-secret")
    assert (token.token_type, token.refresh_token) == ("Bearer", "rt-new")
    assert (await store.load(store_key("api"))).refresh_token == "rt-new"


async def test_stonex_json_body_without_grant_type(server: TokenServer, build, clock) -> None:
    server.script.append(Reply.token(STONEX_JWT, 3600, scope="client_credentials"))
    cred = build(
        grant="client_credentials",
        token_url=server.url,
        client_auth="client_secret_post",
        request_format="json",
        include_grant_type=False,
        client_id="0oaflsxggtKgKNyds2e7",
        client_secret="xEMk-secret",
    )
    token = await cred.current()
    [req] = server.requests
    assert req.content_type == "application/json"
    assert json.loads(req.body) == {"client_id": "0oaflsxggtKgKNyds2e7", "client_secret": "xEMk-secret"}
    assert token.expires_at == clock.now() + 3600  # expires_in wins over the JWT's (old) exp
    assert token.access_token == STONEX_JWT


async def test_tradevest_form_client_credentials(server: TokenServer, build) -> None:
    cred = build(
        grant="client_credentials",
        token_url=server.url,
        client_auth="client_secret_post",
        client_id="partner",
        client_secret="tv-secret",
    )
    await cred.current()
    [req] = server.requests
    assert req.content_type == FORM
    assert req.params == {"grant_type": "client_credentials", "client_id": "partner", "client_secret": "tv-secret"}


@pytest.mark.parametrize("client_auth", ["client_secret_basic", "client_secret_post"])
async def test_o_token_both_variants_with_scope(clock, transport, store, client_auth: str) -> None:
    async with TokenServer(path="/o/token/", clock=clock) as server:
        route = make_route(
            "pay",
            grant="client_credentials",
            token_url=server.url,
            client_auth=client_auth,
            client_id="your_client_id",
            client_secret="your_client_secret",
            scope="read write",
        )
        cred = build_credential(route, transport=transport, store=store, clock=clock)
        token = await cred.current()
        [req] = server.requests
    assert req.path == "/o/token/"
    assert req.body.count(b"scope=read+write") == 1
    if client_auth == "client_secret_basic":
        expected = base64.b64encode(b"your_client_id:your_client_secret").decode()
        assert req.headers["Authorization"] == f"Basic {expected}"
        assert req.params == {"grant_type": "client_credentials", "scope": "read write"}
    else:
        assert "Authorization" not in req.headers
        assert req.params == {
            "grant_type": "client_credentials",
            "client_id": "your_client_id",
            "client_secret": "your_client_secret",
            "scope": "read write",
        }
    assert token.access_token == "at-1"


async def test_basic_header_form_encodes_before_base64(server: TokenServer, build) -> None:
    client_id, secret = "my client:id/ü", "p@ss:w+rd %&=~"
    cred = build(grant="client_credentials", token_url=server.url, client_id=client_id, client_secret=secret)
    await cred.current()
    [req] = server.requests
    raw = f"{quote_plus(client_id)}:{quote_plus(secret)}"
    assert raw == "my+client%3Aid%2F%C3%BC:p%40ss%3Aw%2Brd+%25%26%3D~"
    assert req.headers["Authorization"] == "Basic " + base64.b64encode(raw.encode()).decode()
    assert req.basic_auth() == (client_id, secret)
    assert basic_authorization("a", "b") == "Basic YTpi"


async def test_public_client_extras_and_headers(server: TokenServer, build) -> None:
    cred = build(
        grant="client_credentials",
        token_url=server.url,
        client_auth="none",
        client_id="pub",
        audience="https://api",
        extra_params={"resource": "r1"},
        extra_headers={"X-Tenant": "t1"},
    )
    await cred.current()
    [req] = server.requests
    assert req.params == {
        "grant_type": "client_credentials",
        "client_id": "pub",
        "audience": "https://api",
        "resource": "r1",
    }
    assert req.headers["X-Tenant"] == "t1"
    assert "Authorization" not in req.headers


async def test_json_format_keeps_grant_type_when_asked(server: TokenServer, build) -> None:
    cred = build(
        grant="client_credentials",
        token_url=server.url,
        client_auth="client_secret_post",
        request_format="json",
        client_id="c",
        client_secret="s",
        scope="a b",
    )
    await cred.current()
    assert json.loads(server.requests[0].body) == {
        "grant_type": "client_credentials",
        "client_id": "c",
        "client_secret": "s",
        "scope": "a b",
    }
