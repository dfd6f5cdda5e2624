"""End to end against a real OAuth server: Django + django-oauth-toolkit on loopback.

A user logs in through the server's own login form and consent page (the browser is an HTTP
client with cookies), `authproxy login` saves the tokens, and proxies — restarted in between —
serve the server's protected API across several access-token expiries while refresh tokens
rotate. The rotated refresh token must be persisted and the old one refused by the server.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import re
import select
import subprocess
import sys
from collections.abc import Iterator
from html import unescape
from pathlib import Path

import aiohttp
import pytest
from yarl import URL

from authproxy.credentials.client_auth import basic_authorization
from authproxy.credentials.discovery import discover
from authproxy.credentials.identity import store_key
from authproxy.login.cli import run_login, run_logout
from authproxy.login.device_cli import run_device_login
from authproxy.server.runtime import RUNTIME
from authproxy.stores.file import FileStore
from tests.conftest import wait_until
from tests.fakes import make_route
from tests.fakes.auth_server import FakeBrowser, browse, free_port, parse

pytest.importorskip("oauth2_provider", reason="django-oauth-toolkit is not installed (pip install -e '.[test]')")

ROOT = Path(__file__).resolve().parents[2]
TOKEN_SECONDS = 60


@pytest.fixture(scope="module")
def oauth_server(tmp_path_factory) -> Iterator[dict]:
    """The Django server as a subprocess; its first stdout line says where it listens."""
    db = tmp_path_factory.mktemp("oauth") / "db.sqlite3"
    redirect_uri = f"http://127.0.0.1:{free_port()}/callback"
    env = {**os.environ, "OAUTH_SERVER_DB": str(db), "OAUTH_SERVER_TOKEN_SECONDS": str(TOKEN_SECONDS)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.oauth_server.serve", redirect_uri],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        ready, _, _ = select.select([proc.stdout], [], [], 60)  # set up and listening; the bound guards a hang
        line = proc.stdout.readline() if ready else ""
        assert line, f"the oauth server did not start (exit code {proc.poll()})"
        yield {**json.loads(line), "redirect_uri": redirect_uri}
    finally:
        proc.terminate()
        proc.wait(10)


def route_raw(server: dict, upstream: str, tmp_path: Path) -> dict:
    base = server["url"]
    return {
        "store": {"kind": "file", "path": str(tmp_path / "tokens.json")},
        "routes": {
            "api": {
                "upstream": upstream,
                "auth": {
                    "grant": "authorization_code",
                    "authorize_url": f"{base}/o/authorize/",
                    "token_url": f"{base}/o/token/",
                    "revocation_url": f"{base}/o/revoke_token/",
                    "client_id": server["client_id"],
                    "client_secret": server["client_secret"],
                    "client_auth": "client_secret_basic",
                    "scope": "read",
                    "redirect_uri": server["redirect_uri"],
                },
            }
        },
    }


def form_fields(page: str) -> dict[str, str]:
    """The hidden inputs of a Django form (csrf token, the OAuth request's fields)."""
    fields = {}
    for tag in re.findall(r"<input[^>]*>", page):
        name, value = re.search(r'name="([^"]*)"', tag), re.search(r'value="([^"]*)"', tag)
        if name and 'type="hidden"' in tag:
            fields[name.group(1)] = unescape(value.group(1)) if value else ""
    return fields


async def log_in_as_alice(session: aiohttp.ClientSession, authorize_url: str) -> tuple[int, str]:
    """Login form, then the consent page, then the redirect back to authproxy (followed)."""
    status, page, at = await browse(session, authorize_url)
    assert status == 200 and "Log in" in page, page[:500]
    login = {**form_fields(page), "username": "alice", "password": "wonderland"}
    async with session.post(at, data=login, allow_redirects=False) as resp:
        assert resp.status == 302, await resp.text()
        consent_url = str(URL(at).join(URL(resp.headers["Location"])))
    status, page, at = await browse(session, consent_url)
    assert status == 200 and "authorizationForm" in page, page[:500]
    async with session.post(at, data={**form_fields(page), "allow": "Authorize"}, allow_redirects=False) as resp:
        assert resp.status == 302, await resp.text()
        callback = resp.headers["Location"]
    status, page, _ = await browse(session, callback)
    return status, page


async def refresh_with(server: dict, refresh_token: str) -> tuple[int, dict]:
    headers = {"Authorization": basic_authorization(server["client_id"], server["client_secret"])}
    data = {"grant_type": "refresh_token", "refresh_token": refresh_token}
    async with aiohttp.ClientSession() as http, http.post(f"{server['url']}/o/token/", data=data, headers=headers) as r:
        return r.status, await r.json()


async def test_login_rotation_and_restarts_against_django_oauth_toolkit(
    oauth_server, make_proxy, client, fake_clock, tmp_path
) -> None:
    raw = route_raw(oauth_server, oauth_server["url"] + "/api", tmp_path)
    config = parse(raw)
    store = FileStore(tmp_path / "tokens.json")
    browser, out = FakeBrowser(), io.StringIO()
    login = asyncio.ensure_future(
        run_login(config.routes["api"], store, open_browser=browser, clock=fake_clock, out=out)
    )
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as session:
        status, page = await log_in_as_alice(session, await asyncio.wait_for(browser.urls.get(), 10))
    assert await login == 0, out.getvalue()
    assert status == 200 and "Logged in" in page
    first = await store.load(store_key("api"))
    assert first is not None and first.refresh_token
    assert oauth_server["client_secret"] not in out.getvalue() and first.refresh_token not in out.getvalue()

    seen_refresh, seen_access = [first.refresh_token], {first.access_token}
    proxy = await make_proxy(raw, clock=fake_clock, store=FileStore(tmp_path / "tokens.json"))

    async def tick(seconds: int) -> None:
        """Let time pass second by second, each renewal finishing at the time it started, as in real life."""
        for _ in range(seconds):
            await fake_clock.advance(1)
            await proxy.app[RUNTIME].router.by_name["api"].credential.wait_idle()

    for round_ in range(4):
        if round_ == 2:  # a real restart: new app, new store handle, same file
            await proxy.runner.cleanup()
            proxy = await make_proxy(raw, clock=fake_clock, store=FileStore(tmp_path / "tokens.json"))
        for _ in range(6):  # traffic every 11 s, across the whole lifetime of a token and past its expiry
            async with client.get(proxy.at("/api/hello")) as resp:
                assert resp.status == 200, await resp.text()
                assert await resp.json() == {"user": "alice"}
            await tick(11)
        stored = await store.load(store_key("api"))
        assert stored is not None  # renewed, and the rotated refresh token persisted
        assert stored.refresh_token not in seen_refresh and stored.access_token not in seen_access
        seen_refresh.append(stored.refresh_token)
        seen_access.add(stored.access_token)

    for old in seen_refresh[:-1]:
        status, body = await refresh_with(oauth_server, old)
        assert (status, body["error"]) == (400, "invalid_grant")

    out = io.StringIO()
    assert await run_logout(config.routes["api"], store, out=out) == 0
    assert "Revoked the refresh token" in out.getvalue()
    status, body = await refresh_with(oauth_server, seen_refresh[-1])
    assert (status, body["error"]) == (400, "invalid_grant")


async def test_discovery_from_django_oauth_toolkits_openid_configuration(oauth_server, transport) -> None:
    base = oauth_server["url"]
    route = make_route(
        "api",
        grant="authorization_code",
        issuer=f"{base}/o",
        client_id=oauth_server["client_id"],
        client_secret=oauth_server["client_secret"],
    )
    found = await discover(route, transport)
    assert found.url == f"{base}/o/.well-known/openid-configuration"
    assert (found.auth.token_url, found.auth.authorize_url) == (f"{base}/o/token/", f"{base}/o/authorize/")
    assert [(f.kind, f.key) for f in found.findings] == [("filled", "token_url"), ("filled", "authorize_url")]
    assert "client_secret_basic" in found.metadata["token_endpoint_auth_methods_supported"]
    assert "S256" in found.metadata["code_challenge_methods_supported"]


async def approve_device(session: aiohttp.ClientSession, link: str, action: str = "accept") -> str:
    """What a user does with the link: log in, confirm the prefilled user code, accept (or deny)."""
    status, page, at = await browse(session, link)
    assert status == 200 and "Log in" in page, page[:500]
    login = {**form_fields(page), "username": "alice", "password": "wonderland"}
    async with session.post(at, data=login, allow_redirects=False) as resp:
        assert resp.status == 302, await resp.text()
        code_url = str(URL(at).join(URL(resp.headers["Location"])))
    status, page, at = await browse(session, code_url)
    assert status == 200 and "Enter code displayed on device" in page, page[:500]
    user_code = re.search(r'name="user_code" value="([^"]*)"', page)
    assert user_code is not None, page[:500]
    async with session.post(
        at, data={**form_fields(page), "user_code": user_code.group(1)}, allow_redirects=False
    ) as r:
        assert r.status == 302, await r.text()
        confirm_url = str(URL(at).join(URL(r.headers["Location"])))
    status, page, at = await browse(session, confirm_url)
    assert status == 200 and "requests access" in page, page[:500]
    async with session.post(at, data={**form_fields(page), "action": action}, allow_redirects=False) as resp:
        assert resp.status == 302, await resp.text()
    return user_code.group(1)


@pytest.mark.parametrize("action", ["accept", "deny"])
async def test_device_login_against_django_oauth_toolkit(
    oauth_server, make_proxy, client, fake_clock, transport, tmp_path, action
) -> None:
    base = oauth_server["url"]
    raw = {
        "store": {"kind": "file", "path": str(tmp_path / "tokens.json")},
        "routes": {
            "api": {
                "upstream": f"{base}/api",
                "auth": {
                    "grant": "authorization_code",
                    "login": "device",
                    "issuer": f"{base}/o",  # the token endpoint from its discovery document
                    "device_authorization_url": f"{base}/o/device-authorization/",  # DOT does not publish it
                    "client_id": oauth_server["device_client_id"],
                    "client_secret": oauth_server["device_client_secret"],
                    "scope": "read",
                },
            }
        },
    }
    config = parse(raw)
    store = FileStore(tmp_path / "tokens.json")
    out = io.StringIO()
    login = asyncio.ensure_future(
        run_device_login(config.routes["api"], store, clock=fake_clock, transport=transport, out=out)
    )
    await wait_until(lambda: fake_clock.sleepers == 1 or login.done())
    assert not login.done(), out.getvalue()
    link = re.search(r"^  (http://\S+)$", out.getvalue(), re.M)
    assert link is not None and link.group(1).startswith(f"{base}/o/device/?user_code="), out.getvalue()
    await fake_clock.advance(5)  # one poll before the user acts: authorization_pending
    await wait_until(lambda: fake_clock.sleepers == 1 or login.done())
    assert not login.done(), out.getvalue()

    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as session:
        user_code = await approve_device(session, link.group(1), action)
    assert f"the code {user_code}." in out.getvalue()
    await fake_clock.advance(5)
    code = await asyncio.wait_for(login, 30)
    text = out.getvalue()
    assert oauth_server["device_client_secret"] not in text
    if action == "deny":
        assert code == 1
        assert text.splitlines()[-1].startswith("login failed: the login was denied at the provider (access_denied)")
        assert await store.load(store_key("api")) is None
        return
    assert code == 0, text
    stored = await store.load(store_key("api"))
    assert stored is not None and stored.refresh_token and stored.refresh_token not in text
    proxy = await make_proxy(raw, clock=fake_clock, store=FileStore(tmp_path / "tokens.json"))
    async with client.get(proxy.at("/api/hello")) as resp:
        assert resp.status == 200, await resp.text()
        assert await resp.json() == {"user": "alice"}
