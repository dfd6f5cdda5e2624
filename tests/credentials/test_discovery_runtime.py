"""A running proxy with auth.issuer: discovery before the first token request, retried with backoff while
the route reports `discovery_failed` (other routes keep serving), and fetched again after a reload."""

from __future__ import annotations

import yaml

from tests.conftest import wait_until
from tests.fakes.idp import OIDC, FakeIdp
from tests.fakes.token_server import Reply


async def get_json(client, url: str) -> tuple[int, dict]:
    async with client.get(url) as resp:
        return resp.status, await resp.json()


def config(idp: FakeIdp, upstream_url: str) -> dict:
    return {
        "routes": {
            "api": {
                "upstream": upstream_url,
                "auth": {
                    "grant": "client_credentials",
                    "issuer": idp.issuer,
                    "client_id": "cid",
                    "client_secret": "SENTINEL-secret",
                },
            },
            "pub": {"upstream": upstream_url},
        }
    }


async def test_discovery_failure_backs_off_then_serves_and_a_reload_fetches_again(
    make_proxy, server, upstream, client, clock, tmp_path
) -> None:
    idp = FakeIdp(server)
    idp.documents[OIDC] = Reply(status=503, json={"error": "temporarily_unavailable"})
    path = tmp_path / "config.yaml"
    proxy = await make_proxy(config(idp, upstream.url), clock=clock, path=path)
    credential = proxy.credential()
    await wait_until(lambda: len(idp.requests_to(OIDC)) == 1)
    await credential.wait_idle()
    where = f"{idp.issuer}{OIDC}"

    async with client.get(proxy.at("/api/x")) as resp:
        assert resp.status == 503
        body = await resp.json()
    assert body["error"]["code"] == "token_unavailable"
    assert "the token endpoint is failing (discovery_failed)" in body["error"]["message"]
    async with client.get(proxy.at("/pub/x")) as resp:
        assert resp.status == 200  # the other route keeps serving
    status, ready = await get_json(client, proxy.at("/-/ready"))
    assert status == 503
    assert [(r["route"], r["state"], r["error"]) for r in ready["not_ready"]] == [
        ("api", "backing_off", "discovery_failed")
    ]
    _, doc = await get_json(client, proxy.at("/-/status"))
    (api,) = [r for r in doc["routes"] if r["name"] == "api"]
    assert api["token"]["last_error_code"] == "discovery_failed"
    assert api["token"]["last_error_detail"] == f"discovery at {where} failed: HTTP 503 (content-type application/json)"
    assert "SENTINEL" not in str(doc) + str(body)
    assert idp.requests_to("/token") == []

    idp.serve_oidc()  # the provider is back
    await clock.advance(1.0)  # the first backoff (1 s at most)
    await wait_until(lambda: len(idp.requests_to("/token")) == 1)
    await credential.wait_idle()
    async with client.get(proxy.at("/api/x")) as resp:
        assert resp.status == 200
    assert upstream.last.headers["Authorization"] == "Bearer at-1"
    (token_request,) = idp.requests_to("/token")
    assert token_request.basic_auth() == ("cid", "SENTINEL-secret")
    assert token_request.form == {"grant_type": "client_credentials"}
    assert len(idp.requests_to(OIDC)) == 2  # the failure and the success: cached from then on

    path.write_text(yaml.safe_dump(config(idp, upstream.url)))
    async with client.post(proxy.at("/-/reload")) as resp:
        assert resp.status == 200
        assert (await resp.json())["kept_credentials"] == ["api"]
    assert len(idp.requests_to(OIDC)) == 2  # nothing fetched until a token is needed
    await clock.advance(3600)  # the token's renewal is due
    await wait_until(lambda: len(idp.requests_to("/token")) == 2)
    await credential.wait_idle()
    assert len(idp.requests_to(OIDC)) == 3  # fetched again once after the reload
    async with client.get(proxy.at("/api/x")) as resp:
        assert resp.status == 200
    assert upstream.last.headers["Authorization"] == "Bearer at-2"
