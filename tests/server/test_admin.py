"""Admin endpoints: health, ready, status and metrics, in each token state."""

from __future__ import annotations

import asyncio

import pytest

from authproxy.server.runtime import RUNTIME
from tests.conftest import wait_until
from tests.fakes.token_server import Reply

SECRET = "SENTINEL-admin-secret"


def cfg(upstream_url: str, token_url: str, grant: str = "client_credentials", **auth: object) -> dict:
    return {
        "routes": {
            "api": {
                "upstream": upstream_url,
                "headers": {"x-api-key": "SENTINEL-key"},
                "auth": {"grant": grant, "token_url": token_url, "client_id": "cid", "client_secret": SECRET, **auth},
            },
            "open": {"upstream": upstream_url, "prefix": "/pub"},
        }
    }


async def get_json(client, url: str) -> tuple[int, dict]:
    async with client.get(url) as resp:
        return resp.status, await resp.json()


async def test_health_is_always_ok(make_proxy, upstream, client) -> None:
    proxy = await make_proxy({"routes": {"dead": {"upstream": "http://127.0.0.1:9"}}})
    assert await get_json(client, proxy.at("/-/health")) == (200, {"status": "ok"})


async def test_ready_flips_with_the_token_state(make_proxy, upstream, token_server, client) -> None:
    token_server.gate = asyncio.Event()
    proxy = await make_proxy(cfg(upstream.url, token_server.url))
    await wait_until(lambda: len(token_server.requests) == 1)
    status, body = await get_json(client, proxy.at("/-/ready"))
    assert status == 503
    assert body == {
        "ready": False,
        "not_ready": [{"route": "api", "state": "renewing", "error": None, "message": None}],
    }
    token_server.gate.set()
    await proxy.credential().wait_idle()
    assert await get_json(client, proxy.at("/-/ready")) == (200, {"ready": True})


async def test_ready_without_token_routes(make_proxy, upstream, client) -> None:
    proxy = await make_proxy({"routes": {"open": {"upstream": upstream.url}}})
    assert await get_json(client, proxy.at("/-/ready")) == (200, {"ready": True})


@pytest.mark.parametrize(
    ("grant", "reply", "state", "error"),
    [
        ("client_credentials", Reply.error("invalid_client", status=401), "failed", "invalid_client"),
        ("refresh_token", Reply.error("invalid_grant"), "login_required", "invalid_grant"),
        ("client_credentials", Reply.html(502), "backing_off", "http_502"),
    ],
)
async def test_not_ready_states_and_status(
    make_proxy, upstream, token_server, client, grant, reply, state, error
) -> None:
    token_server.script.append(reply)
    extra = {"refresh_token": "SENTINEL-rt"} if grant == "refresh_token" else {}
    proxy = await make_proxy(cfg(upstream.url, token_server.url, grant, **extra))
    await wait_until(lambda: len(token_server.requests) == 1)
    await proxy.credential().wait_idle()
    status, body = await get_json(client, proxy.at("/-/ready"))
    assert status == 503
    assert [(r["route"], r["state"], r["error"]) for r in body["not_ready"]] == [("api", state, error)]
    status, doc = await get_json(client, proxy.at("/-/status"))
    (api,) = [r for r in doc["routes"] if r["name"] == "api"]
    assert api["token"]["state"] == state and api["token"]["last_error_code"] == error
    assert "SENTINEL" not in str(doc) + str(body)


async def test_status_reports_routes_tokens_and_counts(make_proxy, upstream, token_server, client, fake_clock) -> None:
    token_server.expires_in = 600
    proxy = await make_proxy(cfg(upstream.url, token_server.url), clock=fake_clock)
    for path in ("/api/a", "/api/b", "/pub/c", "/api/status/502"):
        async with client.get(proxy.at(path)) as resp:
            await resp.read()
    status, doc = await get_json(client, proxy.at("/-/status"))
    assert status == 200
    api, pub = doc["routes"]
    assert (api["name"], api["prefix"], api["upstream"], api["grant"]) == (
        "api",
        "/api",
        upstream.url,
        "client_credentials",
    )
    assert (api["requests"], api["errors"], api["retries_401"], api["in_flight"]) == (3, 1, 0, 0)
    assert api["token"]["state"] == "valid" and api["token"]["expires_in"] == 600
    assert api["token"]["last_outcome"] == "ok"
    # ISO 8601 UTC to the second; durations whole seconds (FakeClock starts at 1_700_000_000 = 2023-11-14T22:13:20Z)
    assert fake_clock.now() == 1_700_000_000.0
    assert api["token"]["last_refresh_at"] == "2023-11-14T22:13:20Z"
    assert api["token"]["expires_at"] == "2023-11-14T22:23:20Z"
    assert doc["now"] == "2023-11-14T22:13:20Z" and doc["uptime_s"] == 0 and isinstance(doc["uptime_s"], int)
    assert type(api["token"]["renew_in"]) is int and 540 <= api["token"]["renew_in"] <= 546
    assert api["token"]["retry_in"] is None
    assert (pub["name"], pub["grant"], pub["token"], pub["requests"]) == ("open", "none", None, 1)
    assert "SENTINEL" not in str(doc) and "at-1" not in str(doc)


async def test_status_backing_off_while_renewal_fails(make_proxy, upstream, token_server, client, fake_clock) -> None:
    token_server.expires_in = 600
    proxy = await make_proxy(cfg(upstream.url, token_server.url), clock=fake_clock)
    await wait_until(lambda: len(token_server.requests) == 1)
    await proxy.credential().wait_idle()
    token_server.default = lambda request: Reply.html(503)
    await wait_until(lambda: fake_clock.sleepers > 0)  # the refresher waits for the renewal point
    await fake_clock.advance(550)  # past the renewal point (540-546 with jitter), before expiry
    await wait_until(lambda: len(token_server.requests) >= 2)  # the renewal, then retries backing off
    await proxy.credential().wait_idle()
    _, doc = await get_json(client, proxy.at("/-/status"))
    assert (doc["routes"][0]["token"]["state"], doc["routes"][0]["token"]["valid"]) == ("backing_off", True)
    assert doc["routes"][0]["token"]["last_error_code"] == "http_503"
    assert (await get_json(client, proxy.at("/-/ready")))[0] == 200  # the token is still valid


async def test_status_html_for_browsers(make_proxy, upstream, client) -> None:
    proxy = await make_proxy({"routes": {"api": {"upstream": upstream.url}}})
    async with client.get(proxy.at("/-/status"), headers={"Accept": "text/html,*/*"}) as resp:
        assert resp.status == 200 and resp.content_type == "text/html"
        page = await resp.text()
    assert "<table>" in page and "<td>api</td>" in page and upstream.url in page


async def test_metrics_after_known_traffic(make_proxy, upstream, token_server, client) -> None:
    proxy = await make_proxy(cfg(upstream.url, token_server.url))
    upstream.valid_tokens = {"at-2"}
    async with client.get(proxy.at("/api/auth")) as resp:  # 401 -> refresh -> 200
        assert resp.status == 200
    for _ in range(2):
        async with client.get(proxy.at("/api/plain?secret=SENTINEL-query")) as resp:
            await resp.read()
    async with client.post(proxy.at("/api/status/503"), data=b"x") as resp:
        await resp.read()
    async with client.request("PROPFIND", proxy.at("/pub/x")) as resp:
        await resp.read()
    async with client.get(proxy.at("/nowhere")) as resp:
        assert resp.status == 404
    async with client.get(proxy.at("/-/metrics")) as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"].startswith("text/plain")
        text = await resp.text()
    lines = set(text.splitlines())
    for line in (
        'authproxy_requests_total{method="GET",route="api",status_class="2xx"} 3.0',
        'authproxy_requests_total{method="POST",route="api",status_class="5xx"} 1.0',
        'authproxy_requests_total{method="OTHER",route="open",status_class="2xx"} 1.0',
        'authproxy_requests_total{method="GET",route="(none)",status_class="4xx"} 1.0',
        'authproxy_errors_total{route="api"} 1.0',
        'authproxy_401_retries_total{route="api"} 1.0',
        'authproxy_in_flight_requests{route="api"} 0.0',
        'authproxy_upstream_latency_seconds_count{route="api"} 4.0',
        'authproxy_proxy_overhead_seconds_count{route="api"} 4.0',
        'authproxy_token_fetches_total{outcome="ok",route="api"} 2.0',
        'authproxy_token_valid{route="api"} 1.0',
        'authproxy_token_state{route="api",state="valid"} 1.0',
        'authproxy_token_state{route="api",state="renewing"} 0.0',
        'authproxy_token_state{route="api",state="login_required"} 0.0',
    ):
        assert line in lines, line
    assert any(line.startswith('authproxy_token_expiry_seconds{route="api"} ') for line in lines)
    assert "SENTINEL" not in text and "/plain" not in text and "at-2" not in text


async def test_separate_admin_listener(make_proxy, upstream, client) -> None:
    proxy = await make_proxy({"admin": {"listen": "127.0.0.1:0"}, "routes": {"api": {"upstream": upstream.url}}})
    admin = f"http://127.0.0.1:{proxy.app[RUNTIME].admin_port}"
    assert await get_json(client, admin + "/-/health") == (200, {"status": "ok"})
    status, body = await get_json(client, proxy.at("/-/health"))
    assert status == 404 and body["error"]["code"] == "route_not_found"
    async with client.get(proxy.at("/api/x")) as resp:
        assert resp.status == 200
    status, body = await get_json(client, admin + "/api/x")
    assert status == 404 and "admin listener" in body["error"]["message"]
    assert upstream.seen and len(upstream.seen) == 1


async def test_unknown_admin_path_is_not_proxied(make_proxy, upstream, client) -> None:
    proxy = await make_proxy({"routes": {"root": {"upstream": upstream.url, "prefix": "/"}}})
    status, body = await get_json(client, proxy.at("/-/nope"))
    assert status == 404 and body["error"]["code"] == "route_not_found"
    assert upstream.seen == []
