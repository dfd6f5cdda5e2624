"""Hot reload: valid and invalid changes, credentials kept when unchanged, in-flight requests finish."""

from __future__ import annotations

import yaml

from authproxy.credentials.identity import store_key
from authproxy.server.runtime import RUNTIME
from tests.conftest import wait_until


def cfg(upstream_url: str, token_url: str, secret: str = "s1", **extra_routes: dict) -> dict:
    return {
        "routes": {
            "api": {
                "upstream": upstream_url,
                "headers": {"x-api-key": "k1"},
                "auth": {
                    "grant": "client_credentials",
                    "token_url": token_url,
                    "client_id": "c",
                    "client_secret": secret,
                },
            },
            "pay": {
                "upstream": upstream_url,
                "auth": {
                    "grant": "client_credentials",
                    "token_url": token_url,
                    "client_id": "p",
                    "client_secret": "p1",
                },
            },
            **extra_routes,
        }
    }


async def reload(client, proxy) -> tuple[int, dict]:
    async with client.post(proxy.at("/-/reload")) as resp:
        return resp.status, await resp.json()


async def test_valid_change_applies_and_unchanged_credentials_keep_their_token(
    make_proxy, upstream, token_server, client, tmp_path
) -> None:
    path = tmp_path / "config.yaml"
    proxy = await make_proxy(cfg(upstream.url, token_server.url), path=path)
    for route in ("api", "pay"):
        async with client.get(proxy.at(f"/{route}/x")) as resp:
            assert resp.status == 200
    api_token = upstream.seen[0].headers["Authorization"]
    assert len(token_server.requests) == 2
    changed = cfg(upstream.url, token_server.url, new={"upstream": upstream.url, "prefix": "/fresh"})
    changed["routes"]["api"]["headers"] = {"x-api-key": "k2"}  # not a credential change
    changed["routes"]["pay"]["auth"].update(client_id="p2", client_secret="p2")  # another client
    path.write_text(yaml.safe_dump(changed))
    status, body = await reload(client, proxy)
    assert status == 200
    assert body == {
        "reloaded": True,
        "kept_credentials": ["api"],
        "new_credentials": ["pay"],
        "removed_routes": [],
        "restart_needed": [],
    }
    async with client.get(proxy.at("/api/x")) as resp:
        assert resp.status == 200
    assert upstream.last.headers["x-api-key"] == "k2"
    assert upstream.last.headers["Authorization"] == api_token  # the kept token: no new token request
    async with client.get(proxy.at("/fresh/y")) as resp:
        assert resp.status == 200
    await wait_until(lambda: len(token_server.requests) == 3)  # only pay's new credential fetched
    assert token_server.requests[-1].basic_auth() == ("p2", "p2")


async def test_rotated_secret_keeps_the_stored_token(make_proxy, upstream, token_server, client, tmp_path) -> None:
    path = tmp_path / "config.yaml"
    proxy = await make_proxy(cfg(upstream.url, token_server.url), path=path)
    async with client.get(proxy.at("/api/x")) as resp:
        assert resp.status == 200
    api_token = upstream.last.headers["Authorization"]
    await wait_until(lambda: len(token_server.requests) == 2)
    path.write_text(yaml.safe_dump(cfg(upstream.url, token_server.url, secret="s2")))
    status, body = await reload(client, proxy)
    assert status == 200 and body["new_credentials"] == ["api"]
    async with client.get(proxy.at("/api/x")) as resp:
        assert resp.status == 200
    assert upstream.last.headers["Authorization"] == api_token  # still valid: no token request needed
    assert len(token_server.requests) == 2


async def test_invalid_change_keeps_the_running_config(
    make_proxy, upstream, token_server, client, tmp_path, logs
) -> None:
    path = tmp_path / "config.yaml"
    proxy = await make_proxy(cfg(upstream.url, token_server.url), path=path)
    path.write_text("routes:\n  api: {upstrem: x}\n  other: {upstream: 'ftp://nope'}\n")
    status, body = await reload(client, proxy)
    assert status == 400
    assert body["error"]["code"] == "config_invalid"
    paths = [p["path"] for p in body["error"]["problems"]]
    assert paths == ["routes.api.upstrem", "routes.api.upstream", "routes.other.upstream"]
    async with client.get(proxy.at("/api/x")) as resp:
        assert resp.status == 200
    failed = [e for e in logs.events if e["event"] == "reload_failed"]
    assert len(failed) == 1 and len(failed[0]["problems"]) == 3


async def test_a_rejected_reload_deletes_no_stored_token_and_leaves_nothing_running(
    make_proxy, upstream, token_server, client, tmp_path
) -> None:
    path = tmp_path / "config.yaml"
    proxy = await make_proxy(cfg(upstream.url, token_server.url), path=path)
    async with client.get(proxy.at("/api/x")) as resp:
        assert resp.status == 200
    store = proxy.app[RUNTIME].store
    stored = await store.load(store_key("api"))
    assert stored is not None
    changed = cfg(upstream.url, token_server.url)
    changed["routes"]["api"]["auth"]["client_id"] = "another-client"  # its token must go, once the reload applies
    (tmp_path / "not-a-ca.pem").write_text("not PEM")
    changed["routes"]["pay"]["tls"] = {"ca_file": str(tmp_path / "not-a-ca.pem")}  # fails when routes are built
    path.write_text(yaml.safe_dump(changed))
    status, body = await reload(client, proxy)
    assert status == 400 and [p["path"] for p in body["error"]["problems"]] == ["routes.pay.tls"]
    assert await store.load(store_key("api")) == stored  # nothing deleted for a config that never applied
    requests = len(token_server.requests)
    async with client.get(proxy.at("/api/x")) as resp:  # still the old config and token
        assert resp.status == 200 and upstream.last.headers["Authorization"] == f"Bearer {stored.access_token}"
    assert len(token_server.requests) == requests  # no credential of the rejected config fetched anything


async def test_in_flight_request_finishes_on_the_old_config(
    make_proxy, upstream, token_server, client, tmp_path
) -> None:
    path = tmp_path / "config.yaml"
    proxy = await make_proxy(cfg(upstream.url, token_server.url), path=path)
    async with client.get(proxy.at("/api/chunks/2")) as slow:
        upstream.chunk_gate.put_nowait(None)
        assert await slow.content.readuntil(b"\n\n") == b"data: 0\n\n"
        path.write_text(yaml.safe_dump({"routes": {"other": {"upstream": upstream.url}}}))
        status, body = await reload(client, proxy)
        assert status == 200 and body["removed_routes"] == ["api", "pay"]
        async with client.get(proxy.at("/api/x")) as resp:
            assert resp.status == 404  # new requests see the new config
        upstream.chunk_gate.put_nowait(None)
        assert await slow.read() == b"data: 1\n\n"
    await wait_until(lambda: not proxy.app[RUNTIME].retired)  # replaced credentials closed


async def test_reload_without_a_config_file(make_proxy, upstream, client) -> None:
    proxy = await make_proxy({"routes": {"api": {"upstream": upstream.url}}})
    status, body = await reload(client, proxy)
    assert status == 409 and "not started from a config file" in str(body)


async def test_restart_only_changes_are_reported(make_proxy, upstream, token_server, client, tmp_path) -> None:
    path = tmp_path / "config.yaml"
    proxy = await make_proxy(cfg(upstream.url, token_server.url), path=path)
    changed = cfg(upstream.url, token_server.url)
    changed["shutdown_timeout"] = 5
    path.write_text(yaml.safe_dump(changed))
    status, body = await reload(client, proxy)
    assert status == 200 and body["restart_needed"] == ["shutdown_timeout"]


async def test_console_and_new_traces_are_restart_only(make_proxy, upstream, token_server, client, tmp_path) -> None:
    path = tmp_path / "config.yaml"
    proxy = await make_proxy(cfg(upstream.url, token_server.url), path=path)
    changed = cfg(upstream.url, token_server.url)
    changed["console"] = {"requests": 10}
    changed["trace"] = ["all"]
    path.write_text(yaml.safe_dump(changed))
    status, body = await reload(client, proxy)
    assert status == 200 and body["restart_needed"] == ["console", "trace"]
