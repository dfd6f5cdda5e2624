"""Team mode (client keys, route/method limits, rate limits) and browser protection."""

from __future__ import annotations

import asyncio
import base64
import hashlib

import pytest

from tests.conftest import raw_exchange, wait_until

ALICE = "alice-key-0123456789abcdef"
BOB = "bob-key-0123456789abcdef"
ADMIN = "admin-key-0123456789abcdef"


def team_cfg(upstream_url: str, **extra: object) -> dict:
    return {
        "clients": {
            "alice": {"key": ALICE},
            "bob": {
                "key_sha256": hashlib.sha256(BOB.encode()).hexdigest(),
                "routes": ["api"],
                "methods": ["GET", "HEAD"],
                "rate_limit": {"rate": 1, "burst": 2},
            },
        },
        "admin": {"key": ADMIN},
        "routes": {
            "api": {"upstream": upstream_url, "headers": {"x-api-key": "injected"}},
            "pay": {"upstream": upstream_url, "prefix": "/payments"},
        },
        **extra,
    }


async def status_json(client, method: str, url: str, **kwargs) -> tuple[int, dict]:
    async with client.request(method, url, **kwargs) as resp:
        return resp.status, await resp.json()


async def test_key_as_bearer_or_header_is_stripped_and_replaced(make_proxy, upstream, client, logs) -> None:
    proxy = await make_proxy(team_cfg(upstream.url))
    for headers in ({"Authorization": f"Bearer {ALICE}"}, {"X-Authproxy-Key": ALICE}):
        async with client.get(proxy.at("/api/x"), headers=headers) as resp:
            assert resp.status == 200
        seen = upstream.last.headers
        assert "Authorization" not in seen and "X-Authproxy-Key" not in seen
        assert seen["x-api-key"] == "injected"
    lines = [e for e in logs.events if e["event"] == "request"]
    assert [e["client"] for e in lines] == ["alice", "alice"]
    assert ALICE not in logs.text


async def test_key_stripped_even_when_the_route_passes_client_auth(make_proxy, upstream, client) -> None:
    config = team_cfg(upstream.url)
    config["routes"]["api"]["pass_client_auth"] = True
    proxy = await make_proxy(config)
    async with client.get(proxy.at("/api/x"), headers={"Authorization": f"Bearer {ALICE}"}) as resp:
        assert resp.status == 200
    assert "Authorization" not in upstream.last.headers


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer wrong-key-0123456789"},
        {"X-Authproxy-Key": ""},
        {"Authorization": f"Basic {ALICE}"},
    ],
)
async def test_unknown_key_401_reveals_nothing(make_proxy, upstream, client, headers) -> None:
    proxy = await make_proxy(team_cfg(upstream.url))
    for path in ("/api/x", "/nope"):
        status, body = await status_json(client, "GET", proxy.at(path), headers=headers)
        assert status == 401 and body["error"]["code"] == "unauthorized"
        assert "/payments" not in str(body) and "/api" not in str(body)
    assert upstream.seen == []


async def test_route_and_method_limits_403(make_proxy, upstream, client) -> None:
    proxy = await make_proxy(team_cfg(upstream.url))
    bob = {"Authorization": f"Bearer {BOB}"}
    async with client.get(proxy.at("/api/x"), headers=bob) as resp:
        assert resp.status == 200
    status, body = await status_json(client, "POST", proxy.at("/api/x"), headers=bob, data=b"x")
    assert (status, body["error"]["code"]) == (403, "forbidden")
    status, body = await status_json(client, "GET", proxy.at("/payments/x"), headers=bob)
    assert (status, body["error"]["code"]) == (403, "forbidden")
    status, body = await status_json(client, "GET", proxy.at("/nope"), headers=bob)
    assert status == 404 and "/api" in body["error"]["message"] and "/payments" not in body["error"]["message"]
    assert len(upstream.seen) == 1


async def test_rate_limit_429_with_retry_after(make_proxy, upstream, client, fake_clock) -> None:
    proxy = await make_proxy(team_cfg(upstream.url), clock=fake_clock)
    bob = {"X-Authproxy-Key": BOB}
    statuses = []
    for _ in range(3):
        async with client.get(proxy.at("/api/x"), headers=bob) as resp:
            statuses.append(resp.status)
            retry_after = resp.headers.get("Retry-After")
    assert statuses == [200, 200, 429] and retry_after == "1"
    await fake_clock.advance(1)
    async with client.get(proxy.at("/api/x"), headers=bob) as resp:
        assert resp.status == 200
    async with client.get(proxy.at("/api/x"), headers={"X-Authproxy-Key": ALICE}) as resp:
        assert resp.status == 200  # other clients have their own bucket (or none)


async def test_admin_endpoints_need_the_admin_key_but_health_is_open(make_proxy, upstream, client) -> None:
    proxy = await make_proxy(team_cfg(upstream.url))
    async with client.get(proxy.at("/-/health")) as resp:
        assert resp.status == 200
    for key in (None, ALICE):
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        status, body = await status_json(client, "GET", proxy.at("/-/status"), headers=headers)
        assert (status, body["error"]["code"]) == (401, "unauthorized")
    async with client.get(proxy.at("/-/status"), headers={"Authorization": f"Bearer {ADMIN}"}) as resp:
        assert resp.status == 200


@pytest.mark.parametrize(
    "target", ["/%2D/status", "/%2d/metrics", "/api/../-/status", "http://127.0.0.1/-/status", "/%2D/reload"]
)
async def test_admin_endpoints_cannot_be_reached_by_encoding_the_path(make_proxy, upstream, target) -> None:
    """The router decodes and normalises paths: `/%2D/status` is `/-/status` and needs the admin key too."""
    proxy = await make_proxy(team_cfg(upstream.url))
    method = "POST" if target.endswith("reload") else "GET"
    raw = await raw_exchange(proxy.url, f"{method} {target} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
    status = int(raw.split(b" ", 2)[1])
    assert status in (400, 401, 404), raw[:300]
    assert b'"uptime_s"' not in raw and b"authproxy_requests" not in raw and b'"reloaded"' not in raw
    assert upstream.seen == []


async def test_a_proxy_key_never_reaches_a_websocket_upstream(make_proxy, upstream, client) -> None:
    config = team_cfg(upstream.url)
    config["routes"]["api"]["pass_client_auth"] = True  # the client's own Authorization passes, a proxy key never
    proxy = await make_proxy(config)
    async with client.ws_connect(proxy.at("/api/ws"), headers={"Authorization": f"Bearer {ALICE}"}) as ws:
        await ws.send_str("x")
        await ws.receive()
    assert "Authorization" not in upstream.seen[-1].headers


async def test_team_mode_may_listen_beyond_loopback(make_proxy, upstream) -> None:
    config = team_cfg(upstream.url, listen="0.0.0.0:0")
    import yaml

    from authproxy.config.load import parse_config

    assert parse_config(yaml.safe_dump(config), env={}).listen == "0.0.0.0:0"


@pytest.mark.parametrize("host", ["evil.example", "evil.example:8080", "localhost.evil.example", "rebind.attacker"])
async def test_dns_rebinding_host_refused(make_proxy, upstream, host) -> None:
    proxy = await make_proxy({"routes": {"api": {"upstream": upstream.url}}})
    raw = await raw_exchange(proxy.url, f"GET /api/secret HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
    assert raw.startswith(b"HTTP/1.1 421")
    assert b'"code": "host_not_allowed"' in raw and b"allowed_hosts" in raw
    assert upstream.seen == []


@pytest.mark.parametrize("host", ["localhost", "localhost:8080", "127.0.0.1:9", "[::1]:8080", "LOCALHOST", "proxy.lan"])
async def test_own_names_and_ip_literals_accepted(make_proxy, upstream, host) -> None:
    proxy = await make_proxy({"allowed_hosts": ["proxy.lan"], "routes": {"api": {"upstream": upstream.url}}})
    raw = await raw_exchange(proxy.url, f"GET /api/x HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
    assert raw.startswith(b"HTTP/1.1 200")


async def test_cross_site_form_post_refused(make_proxy, upstream, client) -> None:
    proxy = await make_proxy({"routes": {"api": {"upstream": upstream.url}}})
    form = {
        "Origin": "https://evil.example",
        "Content-Type": "application/x-www-form-urlencoded",
        "Sec-Fetch-Site": "cross-site",
        "Sec-Fetch-Mode": "navigate",
    }
    status, body = await status_json(client, "POST", proxy.at("/api/transfer"), headers=form, data=b"amount=1000")
    assert (status, body["error"]["code"]) == (403, "cross_site_refused")
    assert "allowed_origins" in body["error"]["message"]
    assert upstream.seen == []


async def test_cross_site_fetch_without_origin_refused(make_proxy, upstream, client) -> None:
    proxy = await make_proxy({"routes": {"api": {"upstream": upstream.url}}})
    status, body = await status_json(
        client, "GET", proxy.at("/api/x"), headers={"Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "no-cors"}
    )
    assert (status, body["error"]["code"]) == (403, "cross_site_refused")
    status, body = await status_json(client, "POST", proxy.at("/-/reload"), headers={"Origin": "null"})
    assert (status, body["error"]["code"]) == (403, "cross_site_refused")


async def test_allowed_origin_passes(make_proxy, upstream, client) -> None:
    proxy = await make_proxy(
        {"allowed_origins": ["http://localhost:3000"], "routes": {"api": {"upstream": upstream.url}}}
    )
    async with client.get(
        proxy.at("/api/x"), headers={"Origin": "http://localhost:3000", "Sec-Fetch-Site": "same-site"}
    ) as resp:
        assert resp.status == 200
    status, _ = await status_json(client, "GET", proxy.at("/api/x"), headers={"Origin": "http://localhost:3001"})
    assert status == 403
    async with client.get(proxy.at("/api/x"), headers={"Sec-Fetch-Site": "none"}) as resp:  # typed in the URL bar
        assert resp.status == 200


async def test_browser_login_asks_for_the_admin_key_in_team_mode(make_proxy, upstream, client) -> None:
    proxy = await make_proxy(team_cfg(upstream.url))
    async with client.get(proxy.at("/-/login/api"), allow_redirects=False) as resp:
        assert resp.status == 401
        assert resp.headers["WWW-Authenticate"].startswith('Basic realm="authproxy admin"')
    wrong = {"Authorization": "Basic " + base64.b64encode(f"me:{ALICE}".encode()).decode()}
    async with client.get(proxy.at("/-/login/api"), headers=wrong, allow_redirects=False) as resp:
        assert resp.status == 401
    right = {"Authorization": "Basic " + base64.b64encode(f"me:{ADMIN}".encode()).decode()}
    async with client.get(proxy.at("/-/status"), headers=right) as resp:
        assert resp.status == 200


# -- what "read-only" guarantees (methods: [GET, HEAD]) ---------------------------------------------


@pytest.mark.parametrize(
    ("how", "kwargs"),
    [
        ("override header", {"headers": {"X-HTTP-Method-Override": "DELETE"}}),
        ("X-HTTP-Method", {"headers": {"X-HTTP-Method": "DELETE"}}),
        ("X-Method-Override", {"headers": {"X-Method-Override": "PUT"}}),
        ("_method query", {"params": {"_method": "DELETE"}}),
        ("_Method encoded", {"path": "/api/things?a=1&%5FMethod=delete"}),
        ("GET with a body", {"data": b'{"delete": true}'}),
    ],
)
async def test_a_read_only_key_cannot_get_around_its_methods(make_proxy, upstream, client, how, kwargs) -> None:
    proxy = await make_proxy(team_cfg(upstream.url))
    path = kwargs.pop("path", "/api/things")
    headers = {"X-Authproxy-Key": BOB, **kwargs.pop("headers", {})}
    status, body = await status_json(client, "GET", proxy.at(path), headers=headers, **kwargs)
    assert (status, body["error"]["code"]) == (403, "forbidden"), how
    assert "GET, HEAD only" in body["error"]["message"]
    assert upstream.seen == []  # nothing was forwarded


async def test_a_read_only_key_may_still_read(make_proxy, upstream, client) -> None:
    proxy = await make_proxy(team_cfg(upstream.url))
    headers = {"X-Authproxy-Key": BOB}
    async with client.get(proxy.at("/api/things?method=x&not_method=1"), headers=headers) as resp:
        assert resp.status == 200
    assert upstream.last.raw_path == "/things?method=x&not_method=1"


async def test_a_chunked_get_is_refused_for_a_read_only_key(make_proxy, upstream) -> None:
    proxy = await make_proxy(team_cfg(upstream.url))
    raw = (
        f"GET /api/x HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Authproxy-Key: {BOB}\r\nTransfer-Encoding: chunked\r\n\r\n"
        "5\r\nhello\r\n0\r\n\r\n"
    ).encode()
    answer = await raw_exchange(proxy.url, raw)
    assert answer.startswith(b"HTTP/1.1 403") and b"with a body" in answer
    assert upstream.seen == []


@pytest.mark.parametrize("allowed", [False, True])
async def test_websockets_need_all_methods_or_an_explicit_allowance(make_proxy, upstream, client, allowed) -> None:
    cfg = team_cfg(upstream.url)
    cfg["clients"]["bob"]["websocket"] = allowed
    proxy = await make_proxy(cfg)
    handshake = {
        "X-Authproxy-Key": BOB,
        "Upgrade": "websocket",
        "Connection": "Upgrade",
        "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
        "Sec-WebSocket-Version": "13",
    }
    async with client.get(proxy.at("/api/ws"), headers=handshake) as resp:
        assert resp.status == (101 if allowed else 403)
        if not allowed:
            assert "clients.bob.websocket: true" in (await resp.json())["error"]["message"]


async def test_one_key_cannot_hold_more_than_its_share_of_requests(make_proxy, upstream, client) -> None:
    cfg = team_cfg(upstream.url)
    cfg["clients"]["carol"] = {"key": "carol-key-0123456789abcdef", "max_concurrent": 2}
    proxy = await make_proxy(cfg)
    carol = {"X-Authproxy-Key": "carol-key-0123456789abcdef"}
    hung = [asyncio.ensure_future(client.get(proxy.at(f"/api/hang/{i}"), headers=carol)) for i in range(2)]
    await wait_until(lambda: len([s for s in upstream.seen if "/hang/" in s.raw_path]) == 2)
    status, body = await status_json(client, "GET", proxy.at("/api/x"), headers=carol)
    assert (status, body["error"]["code"]) == (429, "rate_limited")
    assert "clients.carol.max_concurrent" in body["error"]["message"]
    async with client.get(proxy.at("/api/x"), headers={"X-Authproxy-Key": ALICE}) as resp:
        assert resp.status == 200  # another key is not affected
    for task in hung:
        task.cancel()
    await asyncio.gather(*hung, return_exceptions=True)
    await wait_until(lambda: upstream.cancelled == 2)
    async with client.get(proxy.at("/api/x"), headers=carol) as resp:
        assert resp.status == 200  # its requests ended: its share is free again
