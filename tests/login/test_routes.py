"""The proxy's own browser login: `GET /-/login/ROUTE` → provider → `/-/login/ROUTE/callback`."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Awaitable, Callable
from urllib.parse import parse_qs, urlsplit

import aiohttp
import pytest

from authproxy.config.schema import AuthConfig
from authproxy.credentials.identity import store_key
from authproxy.login.routes import PENDING
from authproxy.stores.memory import MemoryStore
from tests.conftest import RunningProxy
from tests.fakes.auth_server import AuthServer, browse, login_raw

LoginProxy = Callable[..., Awaitable[RunningProxy]]


@pytest.fixture
async def auth_server() -> AsyncIterator[AuthServer]:
    async with AuthServer() as server:
        yield server


@pytest.fixture
async def login_proxy(make_proxy, auth_server) -> LoginProxy:
    """A proxy (with its login routes), registered as a redirect URI at the fake server."""

    async def factory(upstream: str, *, store=None, clock=None, **auth: object) -> RunningProxy:
        redirect = str(auth.pop("redirect_uri", "http://127.0.0.1:1/cli-only"))
        raw = login_raw(auth_server, upstream, redirect, {"kind": "memory"}, **auth)
        proxy = await make_proxy(raw, clock=clock, store=store or MemoryStore())
        auth_server.redirect_uris.append(f"{proxy.url}/-/login/api/callback")
        return proxy

    return factory


@pytest.fixture
async def browser() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as session:
        yield session


async def test_login_in_the_browser_through_the_proxy(login_proxy, auth_server, upstream, browser, logs) -> None:
    store = MemoryStore()
    proxy = await login_proxy(upstream.url, store=store)
    async with browser.get(proxy.at("/api/x")) as resp:
        assert resp.status == 503 and (await resp.json())["error"]["code"] == "login_required"

    status, page, last = await browse(browser, proxy.at("/-/login/api"))
    assert status == 200, page
    assert "Logged in: route api" in page and last.startswith(proxy.at("/-/login/api/callback?"))
    assert auth_server.problems == []
    (authorize,) = auth_server.authorize_requests
    assert authorize["redirect_uri"] == proxy.at("/-/login/api/callback")
    assert (await store.load(store_key("api"))).refresh_token == "rt-1"
    async with browser.get(proxy.at("/api/x")) as resp:
        assert resp.status == 200  # adopted at once: no wait for the store re-read
    assert upstream.last.headers["Authorization"] == "Bearer at-1"
    assert len(auth_server.token_requests) == 1
    assert len(proxy.app[PENDING]) == 0
    for secret in auth_server.secrets_seen:
        assert secret not in logs.text
    assert any(e["event"] == "login_completed" for e in logs.events)


async def test_callback_in_another_browser_is_refused(login_proxy, auth_server, upstream, browser) -> None:
    proxy = await login_proxy(upstream.url)
    _, _, callback = await browse(browser, proxy.at("/-/login/api"), stop_at=proxy.at("/-/login/api/callback"))
    async with aiohttp.ClientSession() as other, other.get(callback) as resp:
        assert resp.status == 400
        body = await resp.json()
    assert body["error"]["code"] == "login_failed"
    assert "did not come back to the browser that started" in body["error"]["message"]
    assert auth_server.token_requests == []
    async with browser.get(callback) as resp:  # the state was spent by the refused attempt
        assert resp.status == 400
        assert "unknown or expired" in (await resp.json())["error"]["message"]


async def test_denied_login_is_a_clear_error(login_proxy, auth_server, upstream, browser) -> None:
    auth_server.decision = "deny"
    proxy = await login_proxy(upstream.url)
    status, page, _ = await browse(browser, proxy.at("/-/login/api"))
    assert status == 400
    assert "access_denied" in page and "login_failed" in page


async def test_exchange_failure_is_a_502_without_secrets(login_proxy, auth_server, upstream, browser) -> None:
    proxy = await login_proxy(upstream.url, client_secret="SENTINEL-wrong")
    status, page, _ = await browse(browser, proxy.at("/-/login/api"))
    assert status == 502 and "invalid_client" in page
    for secret in [*auth_server.secrets_seen, "SENTINEL-wrong"]:
        assert secret not in page


async def test_unknown_state_unknown_route_and_wrong_grant(login_proxy, upstream, browser) -> None:
    proxy = await login_proxy(upstream.url)
    async with browser.get(proxy.at("/-/login/api/callback?state=nope&code=x")) as resp:
        assert resp.status == 400
    async with browser.get(proxy.at("/-/login/nope")) as resp:
        assert resp.status == 404 and (await resp.json())["error"]["code"] == "route_not_found"
    proxy.config.routes["plain"] = dataclasses.replace(proxy.config.routes["api"], name="plain", auth=AuthConfig())
    async with browser.get(proxy.at("/-/login/plain")) as resp:
        assert resp.status == 400 and "only authorization_code routes" in (await resp.json())["error"]["message"]


async def test_a_configured_proxy_callback_is_used_verbatim(login_proxy, upstream, browser) -> None:
    fixed = "https://proxy.example.com/-/login/api/callback"
    proxy = await login_proxy(upstream.url, redirect_uri=fixed)
    async with browser.get(proxy.at("/-/login/api"), allow_redirects=False) as resp:
        assert resp.status == 302
        query = parse_qs(urlsplit(resp.headers["Location"]).query)
        assert resp.cookies["authproxy_login"]["httponly"]
    assert query["redirect_uri"] == [fixed]
    assert query["code_challenge_method"] == ["S256"] and len(query["state"][0]) >= 32
