"""The token endpoint exchange: response mapping, lifetimes and transient failures."""

from __future__ import annotations

import base64
import contextlib
import json
import math
from collections.abc import Callable
from urllib.parse import unquote_plus

import pytest
from hypothesis import given
from hypothesis import strategies as st
from structlog.testing import capture_logs

from authproxy.credentials.build import build_credential, build_endpoint
from authproxy.credentials.client_auth import basic_authorization
from authproxy.credentials.credential import Credential
from authproxy.credentials.endpoint import parse_expires_in, redact
from authproxy.credentials.grants.authorization_code import exchange_code
from authproxy.credentials.identity import store_key
from authproxy.errors import TokenUnavailable
from authproxy.stores.memory import MemoryStore
from tests.fakes import Reply, TokenServer, make_route

Build = Callable[..., Credential]
KEY = store_key("api")


def jwt_like(payload: dict[str, object]) -> str:
    def part(data: dict[str, object]) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()

    return f"{part({'alg': 'none'})}.{part(payload)}.sig"


# -- response mapping ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expires_in", "lifetime"),
    [(3600, 3600), ("120", 120), (" 90.5 ", 90.5), (None, 777), ("soon", 777), (-5, 777), (0, 777), (True, 777)],
)
async def test_expires_in_forms(server, build, clock, expires_in, lifetime) -> None:
    server.script.append(Reply.token("plain-token", expires_in))
    token = await build(default_ttl=777.0).current()
    assert token.expires_at == clock.now() + lifetime


async def test_jwt_exp_used_when_expires_in_missing(server, build, clock) -> None:
    exp = int(clock.now()) + 500
    server.script.append(Reply.token(jwt_like({"sub": "x", "exp": exp}), None))
    assert (await build().current()).expires_at == exp


async def test_dotted_paths_and_token_type_rules(server, build, clock) -> None:
    server.script.append(Reply(json={"data": {"jwt": "nested", "ttl": "60", "kind": "BEARER", "rt": "r2"}}))
    cred = build(
        response={
            "access_token": "data.jwt",
            "expires_in": "data.ttl",
            "token_type": "data.kind",
            "refresh_token": "data.rt",
        }
    )
    token = await cred.current()
    assert (token.access_token, token.expires_at, token.token_type) == ("nested", clock.now() + 60, "Bearer")
    assert token.refresh_token == "r2"
    server.script.append(Reply.token("t2", 60, token_type="bearer"))
    override = build(token_type="Token", store_=MemoryStore())
    assert override.headers(await override.current()) == {"Authorization": "Token t2"}


# -- transient failures ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("reply", "expect"),
    [
        (Reply.html(502), ["HTTP 502", "text/html"]),
        (Reply.text(b"<<garbage>>"), ["HTTP 200", "not a JSON object", "text/plain"]),
        (Reply(json={"token_type": "Bearer", "expires_in": 10}), ["HTTP 200", "without an access token"]),
        (Reply.error("server_error", status=500), ["HTTP 500", "server_error"]),
        (Reply.error("temporarily_unavailable", status=503), ["temporarily_unavailable"]),
        (Reply(status=500, json=None, body=b""), ["HTTP 500", "no OAuth error"]),
        (Reply.error("invalid_request", "missing parameter"), ["HTTP 400", "invalid_request"]),
        (Reply.token("evil\r\nX-Injected: 1"), ["cannot be sent in a header"]),
        (Reply(status=302, body=b"", headers={"Location": "http://elsewhere/"}), ["HTTP 302"]),
    ],
)
async def test_transient_failures_are_token_unavailable(server, build, reply, expect) -> None:
    server.script.append(reply)
    cred = build()
    with pytest.raises(TokenUnavailable) as err:
        await cred.current()
    for fragment in expect:
        assert fragment in err.value.message
    assert "nginx" not in err.value.message and "garbage" not in err.value.message
    assert err.value.retry_after == 1.0
    status = cred.status()
    assert (status["state"], status["valid"], status["last_outcome"]) == ("backing_off", False, "transient_error")


async def test_unreachable_endpoint_is_transient(transport, store, clock) -> None:
    async with TokenServer() as gone:
        url = gone.url
    route = make_route(grant="client_credentials", token_url=url, client_id="c", client_secret="s")
    cred = build_credential(route, transport=transport, store=store, clock=clock)
    with pytest.raises(TokenUnavailable) as err:
        await cred.current()
    assert "cannot reach token endpoint" in err.value.message
    assert cred.status()["last_error_code"] == "unreachable"


@pytest.mark.parametrize("secret", ["csecret-XYZ", "kX9+/vQ2=Zr8&pL"])
async def test_error_description_stays_with_operators_and_is_redacted(server, build, secret) -> None:
    """The provider's description never reaches a proxy client; operators see it, with every form of a
    secret it echoes masked (here the form body the endpoint received, percent-encoded)."""
    from urllib.parse import urlencode

    server.script.append(lambda req: Reply.error("server_error", f"bad {req.body.decode()} / {secret}", status=500))
    cred = build(client_auth="client_secret_post", client_secret=secret)
    with pytest.raises(TokenUnavailable) as err:
        await cred.current()
    assert (
        err.value.message
        == "cannot get a token for route 'api': token endpoint answered HTTP 500: server_error; retrying in 1s"
    )
    detail = cred.status()["last_error_detail"]
    assert detail.startswith("token endpoint answered HTTP 500: server_error (bad ")
    assert secret not in detail and urlencode({"s": secret})[2:] not in detail and "***" in detail


async def test_a_store_that_cannot_save_does_not_lose_the_token(server, build) -> None:
    class FullDisk(MemoryStore):
        async def save(self, key: str, token: object) -> None:
            raise OSError(28, "No space left on device")

    with capture_logs() as logs:
        cred = build(store_=FullDisk())
        assert (await cred.current()).access_token == "at-1"
        assert (await cred.current()).access_token == "at-1"
    assert len(server.requests) == 1
    assert any(e["event"] == "token_store_failed" for e in logs)


async def test_exchange_code_for_the_login_command(server, clock, transport) -> None:
    route = make_route("stex", grant="authorization_code", token_url=server.url, client_id="42", client_secret="s")
    endpoint = build_endpoint(route, clock, transport)
    server.script.append(Reply.token("first-at", 3600, refresh_token="first-rt"))
    token = await exchange_code(
        endpoint, code="c0de", redirect_uri="http://localhost:8765/callback", code_verifier="v" * 43
    )
    assert server.requests[0].params == {
        "grant_type": "authorization_code",
        "code": "c0de",
        "redirect_uri": "http://localhost:8765/callback",
        "code_verifier": "v" * 43,
    }
    assert server.requests[0].basic_auth() == ("42", "s")
    assert (token.access_token, token.refresh_token) == ("first-at", "first-rt")


# -- properties of the pure helpers --------------------------------------------------------------------


@given(st.text(), st.text())
def test_basic_authorization_round_trips_any_id_and_secret(client_id: str, secret: str) -> None:
    value = basic_authorization(client_id, secret)
    raw = base64.b64decode(value.removeprefix("Basic ")).decode("ascii")
    user, sep, password = raw.partition(":")
    assert sep == ":" and (unquote_plus(user), unquote_plus(password)) == (client_id, secret)


@given(st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text()))
def test_parse_expires_in_accepts_only_positive_finite_numbers(value: object) -> None:
    parsed = parse_expires_in(value)
    assert parsed is None or (parsed > 0 and math.isfinite(parsed))


@given(st.text(min_size=1), st.lists(st.text(min_size=4), max_size=3))
def test_redact_never_leaks_a_listed_secret(text: str, secrets: list[str]) -> None:
    out = redact(text + "".join(secrets), secrets)
    assert all(secret not in out for secret in secrets if secret.isprintable())


async def test_a_broken_store_is_explained_to_operators_without_class_names(server, build) -> None:
    """Issue 17 item 9: no class names. The store's own reason goes to /-/status (operators); the proxy's
    client learns only that the store failed (a store's address is not the client's business)."""

    class DownStore(MemoryStore):
        async def load(self, key: str) -> None:
            raise OSError("redis at 127.0.0.1:6390 is unavailable (connection refused)")

        @contextlib.asynccontextmanager
        async def lock(self, key: str):  # type: ignore[override]
            raise OSError("redis at 127.0.0.1:6390 is unavailable (connection refused)")
            yield

    cred = build(store_=DownStore())
    with pytest.raises(TokenUnavailable) as err:
        await cred.current()
    assert "the token store failed" in err.value.message
    assert "6390" not in err.value.message and "OSError" not in err.value.message
    detail = cred.status()["last_error_detail"]
    assert detail == "the token store failed (redis at 127.0.0.1:6390 is unavailable (connection refused))"
