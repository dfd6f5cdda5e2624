"""`authproxy login` / `logout` and a proxy for a route that names only its issuer: the authorize, token
and revocation endpoints come from the metadata document (a fake IdP pointing at the strict fake server)."""

from __future__ import annotations

import asyncio
import io

from authproxy.credentials.identity import store_key
from authproxy.login.cli import run_login, run_logout
from authproxy.stores.file import FileStore
from tests.fakes.auth_server import AuthServer, FakeBrowser, browse, free_port, login_raw, parse
from tests.fakes.idp import OIDC, FakeIdp


async def test_browser_login_logout_and_proxy_through_the_issuer(
    server, upstream, make_proxy, client, fake_clock, tmp_path
) -> None:
    port = free_port()
    async with AuthServer(redirect_uris=[f"http://127.0.0.1:{port}/callback"]) as auth_server:
        idp = FakeIdp(server)
        idp.serve_oidc(
            authorization_endpoint=auth_server.authorize_url,
            token_endpoint=auth_server.token_url,
            revocation_endpoint=auth_server.revocation_url,
        )
        store_cfg = {"kind": "file", "path": str(tmp_path / "tokens.json")}
        raw = login_raw(auth_server, upstream.url, f"http://127.0.0.1:{port}/callback", store_cfg)
        auth = raw["routes"]["api"]["auth"]
        for key in ("authorize_url", "token_url"):
            del auth[key]
        auth["issuer"] = idp.issuer
        route = parse(raw).routes["api"]
        store = FileStore(tmp_path / "tokens.json")

        browser, out = FakeBrowser(), io.StringIO()
        login = asyncio.ensure_future(run_login(route, store, open_browser=browser, clock=fake_clock, out=out))
        url = await asyncio.wait_for(browser.urls.get(), 5)
        assert url.startswith(auth_server.authorize_url + "?")
        await browse(client, url)
        assert await login == 0, out.getvalue()
        assert auth_server.problems == []
        stored = await store.load(store_key("api"))
        assert stored.refresh_token == "rt-1"

        proxy = await make_proxy(raw, clock=fake_clock, store=FileStore(tmp_path / "tokens.json"))
        async with client.get(proxy.at("/api/x")) as resp:
            assert resp.status == 200
        # the stored login belongs to the route (same fingerprint): its token is used as it is
        assert upstream.last.headers["Authorization"] == f"Bearer {stored.access_token}"
        assert len(auth_server.token_requests) == 1
        await proxy.runner.cleanup()

        out = io.StringIO()
        assert await run_logout(route, store, clock=fake_clock, out=out) == 0
        assert "Revoked the refresh token at the provider." in out.getvalue()
        assert len(auth_server.revocations) == 1
        assert len(idp.requests_to(OIDC)) == 2  # login and logout; the proxy needed no token request
