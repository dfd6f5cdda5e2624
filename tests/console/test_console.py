"""The console's server side over real sockets: the page, its JSON, its actions and their CSRF guard."""

from __future__ import annotations

import base64
import re

import aiohttp

from authproxy.console.postman import SCHEMA
from tests.conftest import raw_exchange, wait_until

SECRET = "SENTINEL-console-secret"
API_KEY = "SENTINEL-console-apikey"
ADMIN = "SENTINEL-admin-key-0123456789"
MEMBER = "SENTINEL-member-key-0123456789"


def cfg(upstream_url: str, token_url: str, *, team: bool = False) -> dict:
    config: dict = {
        "routes": {
            "api": {
                "upstream": upstream_url,
                "headers": {"x-api-key": API_KEY},
                "auth": {
                    "grant": "client_credentials",
                    "token_url": token_url,
                    "client_id": "cid",
                    "client_secret": SECRET,
                },
            },
            "open": {"upstream": upstream_url, "prefix": "/pub"},
        }
    }
    if team:
        config["admin"] = {"key": ADMIN}
        config["clients"] = {"alice": {"key": MEMBER, "routes": ["open"]}}
    return config


async def open_console(session: aiohttp.ClientSession, url: str, **kw) -> tuple[str, str]:
    """GET the page in a cookie-keeping session: its HTML and the CSRF token it carries."""
    async with session.get(url + "/-/", **kw) as resp:
        assert resp.status == 200, await resp.text()
        assert resp.headers["Content-Security-Policy"].startswith("default-src 'self'")
        page = await resp.text()
    match = re.search(r'<meta name="csrf-token" content="([0-9a-f]*)">', page)
    assert match is not None
    return page, match.group(1)


def no_secret(text: str) -> None:
    for secret in (SECRET, API_KEY, ADMIN, MEMBER, "at-1", "at-2"):
        assert secret not in text, secret


async def test_page_state_and_requests_hold_no_secret(make_proxy, upstream, token_server) -> None:
    proxy = await make_proxy(cfg(upstream.url, token_server.url))
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as session:
        async with session.get(proxy.at("/api/hello")) as resp:
            assert resp.status == 200
        page, csrf = await open_console(session, proxy.url)
        assert 'data-route="api"' in page and "Renew now" in page and len(csrf) == 64
        assert 'data-field="egress">direct</dd>' in page  # no egress proxy anywhere: just "direct"
        assert "<script>" not in page and "style=" not in page  # nothing inline: the CSP forbids it
        async with session.get(proxy.at("/-/console/state")) as resp:
            state_text = await resp.text()
            state = await resp.json()
        async with session.get(proxy.at("/-/console/requests")) as resp:
            listing = await resp.json()
        (row,) = listing["requests"]
        async with session.get(proxy.at(f"/-/console/requests/{row['id']}")) as resp:
            detail_text = await resp.text()
        async with session.get(proxy.at("/-/console/static/console.js")) as resp:
            assert resp.status == 200 and resp.content_type == "text/javascript"
    api = state["routes"][0]
    assert api["token"]["state"] == "valid" and api["token"]["expires_in"] == 3600
    assert (row["route"], row["path"], row["status"]) == ("api", "/api/hello", 200)
    assert upstream.seen[0].headers["Authorization"] == "Bearer at-1"
    assert "[redacted]" in detail_text
    for text in (page, state_text, detail_text):
        no_secret(text)


async def test_a_link_from_another_site_opens_the_console(make_proxy, upstream, token_server, client) -> None:
    proxy = await make_proxy(cfg(upstream.url, token_server.url))
    async with client.get(proxy.at("/-/"), headers={"Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "navigate"}) as r:
        assert r.status == 200 and "authproxy console" in await r.text()


async def test_renew_now_fetches_a_new_token_from_the_console_page(make_proxy, upstream, token_server) -> None:
    proxy = await make_proxy(cfg(upstream.url, token_server.url))
    await wait_until(lambda: len(token_server.requests) == 1)
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as session:
        _, csrf = await open_console(session, proxy.url)
        origin = proxy.url
        async with session.post(
            proxy.at("/-/console/routes/api/renew"),
            headers={"X-CSRF-Token": csrf, "Origin": origin, "Sec-Fetch-Site": "same-origin"},
        ) as resp:
            assert resp.status == 200 and (await resp.json())["ok"] is True
    assert len(token_server.requests) == 2
    assert proxy.credential().cached().access_token == "at-2"


async def test_cross_site_and_tokenless_posts_are_refused(make_proxy, upstream, token_server) -> None:
    proxy = await make_proxy(cfg(upstream.url, token_server.url))
    await wait_until(lambda: len(token_server.requests) == 1)
    renew = proxy.at("/-/console/routes/api/renew")
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as session:
        _, csrf = await open_console(session, proxy.url)
        refusals = [
            {"X-CSRF-Token": csrf, "Origin": "http://evil.example"},  # another site
            {"X-CSRF-Token": csrf, "Sec-Fetch-Site": "cross-site"},
            {"X-CSRF-Token": csrf, "Sec-Fetch-Site": "same-site"},
            {"Origin": proxy.url},  # no CSRF token
            {"X-CSRF-Token": "0" * 64, "Origin": proxy.url},  # a wrong one
        ]
        for headers in refusals:
            async with session.post(renew, headers=headers) as resp:
                assert resp.status == 403, headers
                assert (await resp.json())["error"]["code"] == "cross_site_refused"
    # the right token, but not this browser's session cookie
    async with aiohttp.ClientSession() as other, other.post(renew, headers={"X-CSRF-Token": csrf}) as resp:
        assert resp.status == 403
    assert len(token_server.requests) == 1  # nothing was renewed


async def test_team_mode_admin_acts_member_reads_its_own_routes(make_proxy, upstream, token_server) -> None:
    proxy = await make_proxy(cfg(upstream.url, token_server.url, team=True))
    basic = {"Authorization": "Basic " + base64.b64encode(f"me:{ADMIN}".encode()).decode()}
    member = {"Authorization": f"Bearer {MEMBER}"}
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as session:
        async with session.get(proxy.at("/-/")) as resp:
            assert resp.status == 401 and resp.headers["WWW-Authenticate"].startswith("Basic")
        for target in ("/-/console/../status", "/-/console/%2E%2E/status", "/-/console/static/../../status"):
            raw = await raw_exchange(  # sent as is: the console's openness to members never reaches other /-/ paths
                proxy.url,
                f"GET {target} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {MEMBER}\r\n"
                "Connection: close\r\n\r\n".encode(),
            )
            assert raw.startswith(b"HTTP/1.1 401") or raw.startswith(b"HTTP/1.1 404"), raw[:200]
            assert b'"uptime_s"' not in raw
        async with session.get(proxy.at("/pub/x"), headers=member) as resp:
            assert resp.status == 200
        page, csrf = await open_console(session, proxy.url, headers=member)
        assert csrf == "" and "Renew now" not in page and 'data-route="api"' not in page
        async with session.get(proxy.at("/-/console/state"), headers=member) as resp:
            assert [r["name"] for r in (await resp.json())["routes"]] == ["open"]
        async with session.get(proxy.at("/-/console/requests"), headers=member) as resp:
            assert [r["path"] for r in (await resp.json())["requests"]] == ["/pub/x"]
        async with session.post(proxy.at("/-/console/routes/api/renew"), headers=member) as resp:
            assert resp.status == 403 and (await resp.json())["error"]["code"] == "forbidden"
        page, csrf = await open_console(session, proxy.url, headers=basic)
        assert "Renew now" in page
        async with session.post(proxy.at("/-/console/routes/api/renew"), headers={**basic, "X-CSRF-Token": csrf}) as r:
            assert r.status == 200 and (await r.json())["ok"] is True


async def test_try_it_goes_through_the_proxy_and_shows_no_credential(make_proxy, upstream, token_server) -> None:
    proxy = await make_proxy(cfg(upstream.url, token_server.url))
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as session:
        _, csrf = await open_console(session, proxy.url)
        payload = {"route": "api", "method": "POST", "path": "/echo?q=1", "headers": [["X-Try", "1"]]}
        payload["body"] = '{"a":1}'
        async with session.post(proxy.at("/-/console/try"), json=payload, headers={"X-CSRF-Token": csrf}) as resp:
            text = await resp.text()
            result = await resp.json()
    assert result["status"] == 200 and result["body"] == '{"a":1}' and result["url"].endswith("/api/echo?q=1")
    seen = upstream.seen[-1]
    assert (seen.method, seen.raw_path, seen.headers["X-Try"]) == ("POST", "/echo?q=1", "1")
    assert seen.headers["Authorization"] == "Bearer at-1" and seen.headers["x-api-key"] == API_KEY
    no_secret(text)


async def test_postman_export_points_at_the_proxy_without_secrets(make_proxy, upstream, token_server) -> None:
    proxy = await make_proxy(cfg(upstream.url, token_server.url))
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as session:
        async with session.get(proxy.at("/-/console/postman/collection.json")) as resp:
            assert "attachment" in resp.headers["Content-Disposition"]
            text = await resp.text()
            collection = await resp.json()
        async with session.get(proxy.at("/-/console/postman/environment.json")) as resp:
            environment = await resp.json()
    assert collection["info"]["schema"] == SCHEMA and collection["auth"] == {"type": "noauth"}
    assert [f["name"] for f in collection["item"]] == ["api", "open"]
    assert collection["item"][0]["item"][0]["request"]["url"]["raw"] == "{{base_api}}/"
    values = {v["key"]: v["value"] for v in environment["values"]}
    assert values == {"base_api": proxy.url + "/api", "base_open": proxy.url + "/pub"}
    no_secret(text + str(environment))


async def test_the_page_shows_each_routes_egress_with_the_proxy_password_masked(
    make_proxy, upstream, token_server
) -> None:
    config = cfg(upstream.url, token_server.url)
    config["egress_proxy"] = {"url": "http://svc:SENTINEL-proxy-pw@proxy.corp.example:3128"}
    config["routes"]["open"]["egress_proxy"] = {"url": "none"}
    config["routes"]["api"]["egress_proxy"] = {"url": "none"}  # the fake upstream and token server are local
    config["routes"]["far"] = {"upstream": "https://far.example", "prefix": "/far"}
    proxy = await make_proxy(config)
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as session:
        page, _ = await open_console(session, proxy.url)
        async with session.get(proxy.at("/-/console/state")) as resp:
            state_text = await resp.text()
    assert 'data-field="egress">http://svc:********@proxy.corp.example:3128 (from egress_proxy.url)</dd>' in page
    assert 'data-field="egress">direct (from routes.open.egress_proxy.url: none)</dd>' in page
    assert "SENTINEL-proxy-pw" not in page and "SENTINEL-proxy-pw" not in state_text
