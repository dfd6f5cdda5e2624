"""The request log behind the console's request list and the trace: bounded, newest first, redacted."""

from __future__ import annotations

from authproxy.observability.logging import MASK
from authproxy.server.runtime import REQUESTS

SECRET = "SENTINEL-recorder-secret"
API_KEY = "SENTINEL-recorder-apikey"


def cfg(upstream_url: str, token_url: str, **extra: object) -> dict:
    return {
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
        },
        **extra,
    }


async def test_recent_requests_newest_first_bounded_and_filtered(make_proxy, upstream, token_server, client) -> None:
    proxy = await make_proxy(cfg(upstream.url, token_server.url, console={"requests": 3}))
    for path in ("/api/one", "/pub/two", "/api/status/404", "/api/four", "/nowhere"):
        async with client.get(proxy.at(path)) as resp:
            await resp.read()
    log = proxy.app[REQUESTS]
    rows = [log.summary(e) for e in log.newest()]
    assert [(r["route"], r["path"], r["status"]) for r in rows] == [
        (None, "/nowhere", 404),
        ("api", "/api/four", 200),
        ("api", "/api/status/404", 404),
    ]
    assert rows[0]["error"] == "route_not_found" and rows[0]["client"] == "127.0.0.1"
    assert rows[1]["time"].endswith("Z") and rows[1]["duration_ms"] >= 0 and rows[1]["retried"] is False
    assert [log.summary(e)["path"] for e in log.newest(route="api", status="4xx")] == ["/api/status/404"]
    assert [log.summary(e)["path"] for e in log.newest(status="200")] == ["/api/four"]
    assert list(log.newest(client="10.0.0.9")) == []


async def test_detail_shows_heads_with_every_credential_redacted(make_proxy, upstream, token_server, client) -> None:
    proxy = await make_proxy(cfg(upstream.url, token_server.url, console={"capture_bodies": 1}))
    body = f'{{"client_secret": "{SECRET}", "n": 1}}'
    async with client.post(proxy.at("/api/echo?x=1"), data=body, headers={"X-Trace-Me": "yes"}) as resp:
        assert await resp.text() == body  # the fake upstream echoes the body
    log = proxy.app[REQUESTS]
    (entry,) = log.newest()
    detail = log.detail(entry)
    sent = dict(detail["upstream"]["headers"])
    assert detail["upstream"]["target"] == "/echo?x=1"
    assert sent["Authorization"] == MASK and sent["x-api-key"] == MASK and sent["X-Trace-Me"] == "yes"
    assert dict(detail["request"]["headers"])["X-Trace-Me"] == "yes"
    assert detail["status"] == 200 and dict(detail["response"]["headers"])["Content-Length"] == str(len(body))
    assert detail["request"]["body"] == detail["response"]["body"] == f'{{"client_secret": "{MASK}", "n": 1}}'
    text = str(detail)
    assert SECRET not in text and API_KEY not in text and "at-1" not in text
    assert upstream.seen[-1].headers["Authorization"] == "Bearer at-1"  # the credential was injected


async def test_bodies_are_not_kept_by_default(make_proxy, upstream, token_server, client) -> None:
    proxy = await make_proxy(cfg(upstream.url, token_server.url))
    async with client.post(proxy.at("/api/echo"), data=b"hello") as resp:
        await resp.read()
    log = proxy.app[REQUESTS]
    detail = log.detail(next(log.newest()))
    assert "body" not in detail["request"] and "body" not in detail["response"]


async def test_trace_logs_one_redacted_line_per_request_of_traced_routes(
    make_proxy, upstream, token_server, client, logs
) -> None:
    proxy = await make_proxy(cfg(upstream.url, token_server.url, trace=["api"]))
    for path in ("/api/traced", "/pub/not-traced"):
        async with client.get(proxy.at(path)) as resp:
            await resp.read()
    traces = [e for e in logs.events if e["event"] == "trace"]
    assert len(traces) == 1
    (trace,) = traces
    assert (trace["route"], trace["method"], trace["path"], trace["status"]) == ("api", "GET", "/api/traced", 200)
    assert trace["upstream"]["target"] == "/traced" and "upstream_ms" in trace and trace["retried"] is False
    assert ["Authorization", MASK] in trace["upstream"]["headers"] and ["x-api-key", MASK] in trace["upstream"][
        "headers"
    ]
    assert SECRET not in logs.text and API_KEY not in logs.text and "at-1" not in logs.text


async def test_no_request_log_and_no_trace_records_nothing(make_proxy, upstream, token_server, client) -> None:
    proxy = await make_proxy(cfg(upstream.url, token_server.url, console={"requests": 0}))
    async with client.get(proxy.at("/api/x")) as resp:
        await resp.read()
    assert list(proxy.app[REQUESTS].newest()) == []
