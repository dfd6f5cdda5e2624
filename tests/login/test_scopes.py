"""A token per scope set: two routes, one provider and one client, different scopes (issue: least privilege).

Each route logs in on its own, keeps its own token chain in the store, renews on its own, and its token
is injected only on its own prefix; a logout of one leaves the other logged in, and a rotation on one
never spends the other's refresh token. Real parts: the strict fake authorization server (PKCE, rotating
refresh tokens, scopes per chain), the file store, the proxy and the fake upstream on loopback.
"""

from __future__ import annotations

import asyncio
import io
from pathlib import Path

import pytest

from authproxy.credentials.identity import store_key
from authproxy.login.cli import run_login, run_logout
from authproxy.stores.file import FileStore
from tests.fakes.auth_server import AuthServer, FakeBrowser, browse, free_port, parse

ROUTES = {"stex": "trade profile reports", "stex-withdraw": "withdrawal"}


@pytest.fixture
async def auth_server():
    port = free_port()
    async with AuthServer(redirect_uris=[f"http://127.0.0.1:{port}/callback"], expires_in=600) as server:
        server.port = port  # type: ignore[attr-defined]
        yield server


def two_routes(server: AuthServer, upstream: str, tmp_path: Path) -> dict:
    redirect = f"http://127.0.0.1:{server.port}/callback"  # type: ignore[attr-defined]
    routes = {}
    for name, scope in ROUTES.items():
        auth = {
            "grant": "authorization_code",
            "authorize_url": server.authorize_url,
            "token_url": server.token_url,
            "revocation_url": server.revocation_url,
            "client_id": server.client_id,  # the same client for both
            "client_secret": server.client_secret,
            "redirect_uri": redirect,
            "scope": scope,
        }
        routes[name] = {"upstream": upstream, "auth": auth}
    return {"store": {"kind": "file", "path": str(tmp_path / "tokens.json")}, "routes": routes}


async def login(config, name: str, client, clock) -> None:
    browser, out = FakeBrowser(), io.StringIO()
    store = FileStore(config.store.path)
    task = asyncio.ensure_future(run_login(config.routes[name], store, open_browser=browser, clock=clock, out=out))
    await browse(client, await asyncio.wait_for(browser.urls.get(), 5))
    assert await task == 0, out.getvalue()


async def injected(proxy, client, upstream, path: str) -> str:
    async with client.get(proxy.at(path)) as resp:
        assert resp.status == 200, await resp.text()
    return upstream.last.headers["Authorization"].removeprefix("Bearer ")


async def test_two_routes_one_client_two_token_chains(auth_server, upstream, make_proxy, client, fake_clock, tmp_path):
    raw = two_routes(auth_server, upstream.url, tmp_path)
    config = parse(raw)
    for name in ROUTES:
        await login(config, name, client, fake_clock)
    asked = [request["scope"] for request in auth_server.authorize_requests]
    assert asked == list(ROUTES.values())  # each login asks only for its own route's scopes

    store = FileStore(config.store.path)
    chains = {name: await store.load(store_key(name)) for name in ROUTES}
    assert {name: auth_server.scopes[t.refresh_token] for name, t in chains.items()} == ROUTES  # type: ignore[union-attr]

    proxy = await make_proxy(raw, clock=fake_clock, store=FileStore(config.store.path))
    for _ in range(2):  # each request carries the token whose scope matches its route
        assert auth_server.scopes[await injected(proxy, client, upstream, "/stex/balance")] == ROUTES["stex"]
        withdraw = await injected(proxy, client, upstream, "/stex-withdraw/withdraw")
        assert auth_server.scopes[withdraw] == ROUTES["stex-withdraw"]
    status = proxy.credential("stex").status()["scope"]
    assert status == {"requested": ROUTES["stex"], "granted": ROUTES["stex"]}

    for _ in range(2):  # both expire and rotate on their own: each spends only its own refresh token
        await fake_clock.advance(601)
        for name, scope in ROUTES.items():
            assert auth_server.scopes[await injected(proxy, client, upstream, f"/{name}/x")] == scope
    refreshes = [
        r.params["refresh_token"] for r in auth_server.token_requests if r.params["grant_type"] != "authorization_code"
    ]
    assert len(refreshes) == 4 and len(set(refreshes)) == 4
    assert auth_server.problems == []  # no refresh token used twice, none of the other chain's

    assert await run_logout(config.routes["stex-withdraw"], FileStore(config.store.path), out=io.StringIO()) == 0
    assert await FileStore(config.store.path).load(store_key("stex-withdraw")) is None
    assert await FileStore(config.store.path).load(store_key("stex")) is not None
    await fake_clock.advance(601)  # the logged-out route cannot renew; the other still can
    assert auth_server.scopes[await injected(proxy, client, upstream, "/stex/y")] == ROUTES["stex"]
    async with client.get(proxy.at("/stex-withdraw/y")) as resp:
        assert resp.status == 503 and (await resp.json())["error"]["code"] == "login_required"


async def test_a_narrower_grant_is_shown_and_logged_once(
    auth_server, upstream, make_proxy, client, fake_clock, tmp_path, logs
):
    auth_server.grantable = {"trade", "profile"}  # the provider silently drops `reports`
    raw = two_routes(auth_server, upstream.url, tmp_path)
    config = parse(raw)
    await login(config, "stex", client, fake_clock)
    proxy = await make_proxy(raw, clock=fake_clock, store=FileStore(config.store.path))
    for _ in range(3):
        await injected(proxy, client, upstream, "/stex/x")
        await fake_clock.advance(601)
    status = proxy.credential("stex").status()["scope"]
    assert status == {"requested": "trade profile reports", "granted": "trade profile"}
    narrowed = [e for e in logs.events if e["event"] == "scope_narrowed"]
    assert len(narrowed) == 1 and narrowed[0]["missing"] == ["reports"] and narrowed[0]["route"] == "stex"
