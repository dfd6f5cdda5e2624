"""`/-/login/ROUTE` for `auth.login: device`: the page shows the link and the user code (never a token or
the device code), the proxy polls in the background, saves the login and the route serves at once."""

from __future__ import annotations

from html import escape

from authproxy.credentials.identity import store_key
from authproxy.login.device_routes import DEVICE_LOGINS
from authproxy.stores.memory import MemoryStore
from tests.conftest import wait_until
from tests.fakes.idp import FakeIdp
from tests.fakes.token_server import Reply


async def test_device_login_through_the_proxy(make_proxy, server, upstream, client, clock) -> None:
    idp = FakeIdp(server)
    idp.serve_oidc()
    idp.tokens = [Reply.error("authorization_pending"), Reply.token("at-web", 3600, refresh_token="SENTINEL-rt")]
    raw = {
        "routes": {
            "api": {
                "upstream": upstream.url,
                "auth": {
                    "grant": "authorization_code",
                    "login": "device",
                    "issuer": idp.issuer,
                    "client_id": "cid",
                    "client_secret": "SENTINEL-secret",
                },
            }
        }
    }
    store = MemoryStore()
    proxy = await make_proxy(raw, clock=clock, store=store)
    async with client.get(proxy.at("/api/x")) as resp:
        assert resp.status == 503 and (await resp.json())["error"]["code"] == "login_required"

    pages = []
    for _ in range(2):  # a reload of the page shows the same code: one device request
        async with client.get(proxy.at("/-/login/api")) as resp:
            assert resp.status == 200
            assert resp.headers["Cache-Control"] == "no-store"
            assert resp.headers["Content-Security-Policy"] == "default-src 'none'"
            pages.append(await resp.text())
    assert pages[0] == pages[1]
    link = escape(f"{server.base_url}/activate?user_code=WDJB-MJHT&x=1")
    assert f'<a href="{link}" rel="noreferrer" target="_blank">{link}</a>' in pages[0]
    assert "<code>WDJB-MJHT</code>" in pages[0] and '<meta http-equiv="refresh" content="5">' in pages[0]
    assert "SENTINEL" not in pages[0]
    assert len(idp.requests_to("/device")) == 1

    await clock.advance(5)
    await wait_until(lambda: len(idp.requests_to("/token")) == 1)
    await wait_until(lambda: clock.sleepers >= 1)
    async with client.get(proxy.at("/-/login/api")) as resp:
        assert "<code>WDJB-MJHT</code>" in await resp.text()  # still pending
    await clock.advance(5)
    await wait_until(lambda: proxy.credential().status()["valid"])
    assert (await store.load(store_key("api"))).refresh_token == "SENTINEL-rt"
    async with client.get(proxy.at("/api/x")) as resp:
        assert resp.status == 200
    assert upstream.last.headers["Authorization"] == "Bearer at-web"

    async with client.get(proxy.at("/-/login/api")) as resp:  # the outcome, once
        assert resp.status == 200
        assert "<h1>Logged in: route api</h1>" in await resp.text()
    async with client.get(proxy.at("/-/login/api")) as resp:  # then a new login
        assert "<code>WDJB-MJHT</code>" in await resp.text()
    assert len(idp.requests_to("/device")) == 2


async def test_a_denied_device_login_shows_why_and_how_to_start_again(make_proxy, server, upstream, client, clock):
    idp = FakeIdp(server)
    idp.tokens = [Reply.error("access_denied")]
    base = server.base_url
    raw = {
        "routes": {
            "api": {
                "upstream": upstream.url,
                "auth": {
                    "grant": "authorization_code",
                    "login": "device",
                    "token_url": f"{base}/token",
                    "device_authorization_url": f"{base}/device",
                    "client_id": "cid",
                    "client_auth": "none",
                },
            }
        }
    }
    proxy = await make_proxy(raw, clock=clock, store=MemoryStore())
    async with client.get(proxy.at("/-/login/api")) as resp:
        assert resp.status == 200
    await clock.advance(5)
    logins = proxy.app[DEVICE_LOGINS].by_route
    await wait_until(lambda: logins["api"].outcome is not None)
    async with client.get(proxy.at("/-/login/api")) as resp:
        page = await resp.text()
        assert resp.status == 400
    assert "<h1>Login failed: route api</h1>" in page
    assert "the login was denied at the provider (access_denied)" in page
    assert '<a href="/-/login/api">Start again</a>' in page
