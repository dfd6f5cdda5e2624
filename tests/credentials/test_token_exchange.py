"""grant token_exchange (RFC 8693): the subject token is read from its file for every exchange."""

from __future__ import annotations

from pathlib import Path

import pytest

from authproxy.config.load import parse_config
from authproxy.credentials.build import build_credential
from authproxy.errors import TokenUnavailable
from authproxy.stores.memory import MemoryStore
from tests.fakes import Reply, TokenServer

GRANT_TYPE = "urn:ietf:params:oauth:grant-type:token-exchange"
JWT_TYPE = "urn:ietf:params:oauth:token-type:jwt"


def exchange_config(token_url: str, token_file: Path, upstream: str = "https://api.example.com", **auth: str) -> str:
    extra = "".join(f", {k}: '{v}'" for k, v in auth.items())
    return (
        "routes:\n  api:\n"
        f"    upstream: {upstream}\n"
        f"    auth: {{grant: token_exchange, token_url: '{token_url}', client_auth: none, "
        f"subject_token_file: '{token_file}'{extra}}}\n"
    )


async def test_the_subject_token_file_is_read_again_for_each_exchange(server, transport, clock, tmp_path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("k8s-token-1\n")
    cfg = parse_config(exchange_config(server.url, token_file, audience="https://api.example.com"))
    cred = build_credential(cfg.routes["api"], transport=transport, store=MemoryStore(), clock=clock)
    assert (await cred.current()).access_token == "at-1"
    token_file.write_text("k8s-token-2\n")  # the kubelet rotates the projected token in place
    await clock.advance(3600)
    assert (await cred.current()).access_token == "at-2"
    assert [r.params for r in server.requests] == [
        {
            "grant_type": GRANT_TYPE,
            "subject_token": f"k8s-token-{n}",
            "subject_token_type": JWT_TYPE,
            "audience": "https://api.example.com",
        }
        for n in (1, 2)
    ]
    await cred.close()


async def test_actor_token_resource_type_scope_and_client_auth(server, transport, clock, tmp_path) -> None:
    (tmp_path / "subject").write_text("subject-jwt")
    (tmp_path / "actor").write_text("actor-jwt")
    text = exchange_config(
        server.url,
        tmp_path / "subject",
        actor_token_file=str(tmp_path / "actor"),
        resource="https://backend.example.com/api",
        requested_token_type="urn:ietf:params:oauth:token-type:access_token",
        subject_token_type="urn:ietf:params:oauth:token-type:id_token",
        scope="orders.read",
    ).replace("client_auth: none", "client_auth: client_secret_basic, client_id: gw, client_secret: gw-secret")
    cred = build_credential(parse_config(text).routes["api"], transport=transport, store=MemoryStore(), clock=clock)
    server.script.append(
        Reply.token("exchanged", 600, issued_token_type="urn:ietf:params:oauth:token-type:access_token")
    )
    assert (await cred.current()).access_token == "exchanged"
    [request] = server.requests
    assert request.params == {
        "grant_type": GRANT_TYPE,
        "subject_token": "subject-jwt",
        "subject_token_type": "urn:ietf:params:oauth:token-type:id_token",
        "actor_token": "actor-jwt",
        "actor_token_type": JWT_TYPE,
        "resource": "https://backend.example.com/api",
        "requested_token_type": "urn:ietf:params:oauth:token-type:access_token",
        "scope": "orders.read",
    }
    assert request.basic_auth() == ("gw", "gw-secret")
    await cred.close()


async def test_a_vanished_token_file_is_a_transient_failure_naming_the_file(server, transport, clock, tmp_path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("t-1")
    cfg = parse_config(exchange_config(server.url, token_file))
    cred = build_credential(cfg.routes["api"], transport=transport, store=MemoryStore(), clock=clock)
    token_file.unlink()
    with pytest.raises(TokenUnavailable) as err:
        await cred.current()
    detail = f"cannot read routes.api.auth.subject_token_file {token_file}: No such file or directory"
    assert err.value.status == 503 and detail in err.value.message
    status = cred.status()
    assert (status["last_error_code"], status["last_outcome"]) == ("token_file_unreadable", "transient_error")
    token_file.write_text("")
    await clock.advance(60)
    with pytest.raises(TokenUnavailable) as err:
        await cred.refresh()
    assert f"routes.api.auth.subject_token_file {token_file} is empty" in err.value.message
    assert cred.status()["last_error_code"] == "token_file_empty"
    assert server.requests == []
    await cred.close()


async def test_proxying_through_a_token_exchange_route(make_proxy, upstream, client, tmp_path) -> None:
    async with TokenServer() as server:
        (tmp_path / "token").write_text("pod-identity")
        proxy = await make_proxy(exchange_config(server.url, tmp_path / "token", upstream.url))
        async with client.get(proxy.at("/api/v1/orders")) as response:
            assert response.status == 200
        assert upstream.seen[0].headers["Authorization"] == "Bearer at-1"
        assert server.requests[0].params["subject_token"] == "pod-identity"
