"""The token engine wired into the proxy: injection, single flight, retry once on 401, failures."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest

from tests.conftest import wait_until
from tests.fakes.clock import FakeClock
from tests.fakes.token_server import Reply, TokenServer

SECRET = "SENTINEL-client-secret"


def token_cfg(upstream_url: str, token_url: str, **route: object) -> dict:
    auth = {"grant": "client_credentials", "token_url": token_url, "client_id": "cid", "client_secret": SECRET}
    auth.update(route.pop("auth", {}))  # type: ignore[arg-type]
    return {
        "routes": {
            "api": {"upstream": upstream_url, "headers": {"x-api-key": "key-1"}, "auth": auth, **route},
            "open": {"upstream": upstream_url},
        }
    }


def credential(proxy, name: str = "api"):
    return proxy.credential(name)


@pytest.fixture
async def big_client():
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
        yield session


async def test_token_injected_and_client_credentials_replaced(make_proxy, upstream, token_server, client) -> None:
    proxy = await make_proxy(token_cfg(upstream.url, token_server.url))
    async with client.get(proxy.at("/api/x"), headers={"Authorization": "Bearer mine", "x-api-key": "mine"}) as resp:
        assert resp.status == 200
    assert upstream.last.headers.getall("Authorization") == ["Bearer at-1"]
    assert upstream.last.headers.getall("x-api-key") == ["key-1"]
    (sent,) = token_server.requests
    assert sent.basic_auth() == ("cid", SECRET)
    assert sent.params == {"grant_type": "client_credentials"}


async def test_500_concurrent_requests_on_a_cold_credential_make_one_token_request(
    make_proxy, upstream, token_server, big_client, fake_clock
) -> None:
    proxy = await make_proxy(token_cfg(upstream.url, token_server.url), clock=fake_clock)
    token_server.gate = asyncio.Event()
    calls = [asyncio.ensure_future(big_client.get(proxy.at(f"/api/n/{i}"))) for i in range(500)]
    await wait_until(lambda: proxy.runner.server.requests_count >= 500 and len(token_server.requests) >= 1)
    token_server.gate.set()
    responses = await asyncio.gather(*calls)
    assert [r.status for r in responses] == [200] * 500
    assert len(token_server.requests) == 1
    assert {s.headers["Authorization"] for s in upstream.seen} == {"Bearer at-1"}
    assert len(upstream.seen) == 500


async def test_500_concurrent_requests_on_an_expired_credential_make_one_token_request(
    make_proxy, upstream, token_server, big_client, fake_clock
) -> None:
    token_server.expires_in = 100
    proxy = await make_proxy(token_cfg(upstream.url, token_server.url), clock=fake_clock)
    async with big_client.get(proxy.at("/api/warm")) as resp:
        assert resp.status == 200
    token_server.gate = asyncio.Event()
    await fake_clock.advance(101)  # past expiry: the refresher's fetch is now held at the gate
    calls = [asyncio.ensure_future(big_client.get(proxy.at(f"/api/n/{i}"))) for i in range(500)]
    await wait_until(lambda: proxy.runner.server.requests_count >= 500)
    token_server.gate.set()
    responses = await asyncio.gather(*calls)
    assert [r.status for r in responses] == [200] * 500
    assert len(token_server.requests) == 2
    assert [s.headers["Authorization"] for s in upstream.seen[1:]] == ["Bearer at-2"] * 500


async def test_100_concurrent_401s_cause_one_refresh_and_one_retry_each(
    make_proxy, upstream, token_server, big_client
) -> None:
    proxy = await make_proxy(token_cfg(upstream.url, token_server.url))
    assert (await credential(proxy).current()).access_token == "at-1"
    upstream.valid_tokens = {"at-2"}  # at-1 has been revoked upstream
    responses = await asyncio.gather(*(big_client.post(proxy.at("/api/auth"), data=b"body") for _ in range(100)))
    assert [r.status for r in responses] == [200] * 100
    assert [(await r.json())["token"] for r in responses] == ["at-2"] * 100
    assert len(token_server.requests) == 2  # the first fetch and exactly one refresh
    assert len(upstream.seen) == 200  # each request: one 401, one retry
    assert [s.body for s in upstream.seen] == [b"body"] * 200


async def test_401_then_200_is_two_upstream_hits(make_proxy, upstream, token_server, client, logs) -> None:
    proxy = await make_proxy(token_cfg(upstream.url, token_server.url))
    upstream.valid_tokens = {"at-2"}
    async with client.put(proxy.at("/api/auth"), data=b"replayed body") as resp:
        assert resp.status == 200
        assert await resp.json() == {"token": "at-2", "body_bytes": 13}
    assert [s.headers["Authorization"] for s in upstream.seen] == ["Bearer at-1", "Bearer at-2"]
    assert [s.body for s in upstream.seen] == [b"replayed body"] * 2
    (line,) = [e for e in logs.events if e["event"] == "request"]
    assert line["retried"] is True and line["status"] == 200


async def test_second_401_goes_back_as_is(make_proxy, upstream, token_server, client) -> None:
    proxy = await make_proxy(token_cfg(upstream.url, token_server.url))
    async with client.get(proxy.at("/api/auth")) as resp:
        assert resp.status == 401
        assert resp.headers["WWW-Authenticate"] == 'Bearer error="invalid_token"'
        assert await resp.json() == {"error": "invalid_token"}
    assert len(upstream.seen) == 2
    assert len(token_server.requests) == 2


async def test_an_upstream_refusing_every_token_does_not_get_a_renewal_per_request(
    make_proxy, upstream, token_server, client, fake_clock, logs
) -> None:
    """A 401 the token cannot fix (wrong API key, 401 for "forbidden") must not hammer the token endpoint."""
    proxy = await make_proxy(token_cfg(upstream.url, token_server.url), clock=fake_clock)
    upstream.valid_tokens = set()  # refuses every token
    for _ in range(20):
        async with client.get(proxy.at("/api/auth/x")) as resp:
            assert resp.status == 401  # the upstream's answer, as it is
    assert len(token_server.requests) == 2  # the first token, one renewal after the first 401
    assert [e["event"] for e in logs.events].count("token_rejected_after_renewal") == 1
    await fake_clock.advance(31)  # the hold is over: one more renewal is allowed
    for _ in range(5):
        async with client.get(proxy.at("/api/auth/x")) as resp:
            assert resp.status == 401
    assert len(token_server.requests) == 3
    upstream.valid_tokens = {"at-4"}  # the upstream is fixed: the next renewal's token works
    await fake_clock.advance(31)
    async with client.get(proxy.at("/api/auth/x")) as resp:
        assert resp.status == 200


async def test_body_over_the_replay_limit_is_streamed_and_not_retried(
    make_proxy, upstream, token_server, client
) -> None:
    proxy = await make_proxy(token_cfg(upstream.url, token_server.url))
    upstream.valid_tokens = {"at-2"}
    body = b"x" * (2 * 1024 * 1024)
    async with client.post(proxy.at("/api/auth"), data=body) as resp:
        assert resp.status == 401
    assert len(upstream.seen) == 1
    assert upstream.seen[0].body == body
    assert len(token_server.requests) == 1  # nothing to retry, so no refresh forced


async def test_chunked_body_is_not_retried(make_proxy, upstream, token_server, client) -> None:
    proxy = await make_proxy(token_cfg(upstream.url, token_server.url))
    upstream.valid_tokens = {"at-2"}

    async def gen():
        yield b"chunk"

    async with client.post(proxy.at("/api/auth"), data=gen()) as resp:
        assert resp.status == 401
    assert len(upstream.seen) == 1


@pytest.mark.parametrize(
    ("policy", "method", "hits"),
    [
        ("always", "POST", 2),
        ("idempotent", "POST", 1),
        ("idempotent", "PUT", 2),
        ("idempotent", "GET", 2),
        ("never", "GET", 1),
    ],
)
async def test_retry_policy(make_proxy, upstream, token_server, client, policy, method, hits) -> None:
    proxy = await make_proxy(token_cfg(upstream.url, token_server.url, retry_on_401=policy))
    upstream.valid_tokens = {"at-2"}
    async with client.request(method, proxy.at("/api/auth"), data=b"b") as resp:
        assert resp.status == (200 if hits == 2 else 401)
    assert len(upstream.seen) == hits


async def test_403_insufficient_scope_is_never_retried(make_proxy, upstream, token_server, client) -> None:
    proxy = await make_proxy(token_cfg(upstream.url, token_server.url, retry_on_invalid_token_403=True))
    async with client.get(proxy.at("/api/scope")) as resp:
        assert resp.status == 403
    assert len(upstream.seen) == 1 and len(token_server.requests) == 1


@pytest.mark.parametrize(("opt_in", "status", "hits"), [(False, 403, 1), (True, 200, 2)])
async def test_403_invalid_token_retried_only_when_enabled(
    make_proxy, upstream, token_server, client, opt_in, status, hits
) -> None:
    proxy = await make_proxy(token_cfg(upstream.url, token_server.url, retry_on_invalid_token_403=opt_in))
    upstream.valid_tokens = {"at-2"}
    async with client.get(proxy.at("/api/auth403")) as resp:
        assert resp.status == status
    assert len(upstream.seen) == hits


async def test_static_token_401_is_returned_without_a_pointless_resend(make_proxy, upstream, client) -> None:
    proxy = await make_proxy(
        {
            "routes": {
                "api": {"upstream": upstream.url, "auth": {"grant": "static", "token": "st-1", "token_type": "Token"}}
            }
        }
    )
    async with client.get(proxy.at("/api/auth")) as resp:
        assert resp.status == 401
    assert [s.headers["Authorization"] for s in upstream.seen] == ["Token st-1"]


@pytest.mark.parametrize(
    ("reply", "status", "code"),
    [
        (Reply.html(502), 503, "token_unavailable"),
        (Reply.text(b"garbage"), 503, "token_unavailable"),
        (Reply(json={"token_type": "Bearer"}), 503, "token_unavailable"),
        (Reply.error("invalid_client", f"bad secret {SECRET}", status=401), 503, "credential_failed"),
        (Reply.error("invalid_scope"), 503, "credential_failed"),
        (Reply.error("unauthorized_client"), 503, "credential_failed"),
        (Reply.error("invalid_grant"), 503, "credential_failed"),
    ],
)
async def test_token_endpoint_failures_become_json_errors_and_other_routes_serve(
    make_proxy, upstream, token_server, client, logs, reply, status, code
) -> None:
    token_server.script.append(reply)
    proxy = await make_proxy(token_cfg(upstream.url, token_server.url))
    await wait_until(lambda: len(token_server.requests) >= 1)
    await credential(proxy).wait_idle()
    async with client.get(proxy.at("/api/x")) as resp:
        assert resp.status == status
        body = await resp.json()
        if code == "token_unavailable":
            assert int(resp.headers["Retry-After"]) >= 1
    assert body["error"]["code"] == code and body["error"]["route"] == "api"
    assert SECRET not in str(body) and SECRET not in logs.text
    assert upstream.seen == []  # nothing was sent without a credential
    async with client.get(proxy.at("/open/x")) as resp:
        assert resp.status == 200


async def test_refresh_grant_invalid_grant_asks_for_login(make_proxy, upstream, token_server, client) -> None:
    token_server.script.append(Reply.error("invalid_grant", "refresh token revoked"))
    proxy = await make_proxy(
        token_cfg(upstream.url, token_server.url, auth={"grant": "refresh_token", "refresh_token": "SENTINEL-rt"})
    )
    async with client.get(proxy.at("/api/x")) as resp:
        assert resp.status == 503
        body = await resp.json()
    assert body["error"]["code"] == "login_required"
    assert "authproxy login api" in body["error"]["message"]
    assert "SENTINEL-rt" not in str(body)
    assert token_server.requests[0].params["refresh_token"] == "SENTINEL-rt"


async def test_expired_token_is_never_injected(make_proxy, upstream, token_server, client, fake_clock) -> None:
    token_server.expires_in = 100
    proxy = await make_proxy(token_cfg(upstream.url, token_server.url), clock=fake_clock)
    async with client.get(proxy.at("/api/x")) as resp:
        assert resp.status == 200
    token_server.default = lambda request: Reply.html(500)
    await fake_clock.advance(101)
    await credential(proxy).wait_idle()
    async with client.get(proxy.at("/api/x")) as resp:
        assert resp.status == 503
        assert (await resp.json())["error"]["code"] == "token_unavailable"
        assert "Retry-After" in resp.headers
    assert len(upstream.seen) == 1


async def test_failed_startup_fetch_recovers_lazily(make_proxy, upstream, token_server, client, fake_clock) -> None:
    token_server.script.append(Reply.html(500))
    proxy = await make_proxy(token_cfg(upstream.url, token_server.url), clock=fake_clock)
    await wait_until(lambda: len(token_server.requests) >= 1)
    await credential(proxy).wait_idle()
    async with client.get(proxy.at("/open/x")) as resp:
        assert resp.status == 200
    await fake_clock.advance(2)  # past the first backoff
    async with client.get(proxy.at("/api/x")) as resp:
        assert resp.status == 200
    assert upstream.last.headers["Authorization"] == "Bearer at-1"


async def test_token_renewed_in_background_before_expiry(make_proxy, upstream, token_server, client) -> None:
    clock = FakeClock()
    token_server.expires_in = 600
    proxy = await make_proxy(token_cfg(upstream.url, token_server.url), clock=clock)
    async with client.get(proxy.at("/api/x")) as resp:
        assert resp.status == 200
    await wait_until(lambda: clock.sleepers > 0)  # the refresher waits for the renewal point
    await clock.advance(480)  # leeway is max(60 s, 10 %) = 60 s, jitter only shortens it
    assert len(token_server.requests) == 1
    await clock.advance(66)
    await wait_until(lambda: len(token_server.requests) == 2)
    await credential(proxy).wait_idle()
    async with client.get(proxy.at("/api/x")) as resp:
        assert resp.status == 200
    assert upstream.last.headers["Authorization"] == "Bearer at-2"
    assert len(token_server.requests) == 2


async def test_provider_documents_through_the_proxy(make_proxy, upstream, client) -> None:
    """StoneX: JSON {client_id, client_secret} to /api/v/authentication on the upstream host."""
    async with TokenServer(path="/api/v/authentication") as server:
        proxy = await make_proxy(
            {
                "routes": {
                    "stonex": {
                        "preset": "stonex",
                        "upstream": server.base_url,
                        "auth": {"client_id": "0oa", "client_secret": SECRET},
                    }
                }
            }
        )
        async with client.get(proxy.at("/stonex/payments")) as resp:
            assert resp.status == 200  # the token server plays the upstream too, and records both
        sent, proxied = server.requests
        assert proxied.path == "/payments" and proxied.headers["Authorization"] == "Bearer at-1"
        assert sent.path == "/api/v/authentication"
        assert sent.content_type == "application/json"
        assert sent.json == {"client_id": "0oa", "client_secret": SECRET}
