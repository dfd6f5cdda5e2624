"""Forwarding through a real proxy to a real recording upstream, over real sockets."""

from __future__ import annotations

import asyncio
import gzip

import aiohttp
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import raw_exchange


def cfg(upstream_url: str, **route: object) -> dict:
    return {"routes": {"api": {"upstream": upstream_url + "/base", **route}}}


@pytest.fixture
async def proxy(make_proxy, upstream):
    return await make_proxy(cfg(upstream.url, headers={"x-api-key": "injected-key"}))


@pytest.mark.parametrize("method", ["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "PROPFIND"])
async def test_every_method_reaches_upstream(proxy, upstream, client, method) -> None:
    async with client.request(method, proxy.at("/api/items/1?a=1"), data=b"payload") as resp:
        assert resp.status == 200
        assert await resp.read() == b"payload"
    assert upstream.last.method == method
    assert upstream.last.raw_path == "/base/items/1?a=1"
    assert upstream.last.body == b"payload"


async def test_head_has_no_body_but_keeps_headers(proxy, upstream, client) -> None:
    async with client.head(proxy.at("/api/status/200")) as resp:
        assert resp.status == 200
        assert resp.headers["X-Status"] == "200"
        assert await resp.read() == b""
    assert upstream.last.method == "HEAD"


@pytest.mark.parametrize("status", [204, 304])
async def test_bodiless_statuses(proxy, client, status) -> None:
    async with client.get(proxy.at(f"/api/status/{status}")) as resp:
        assert resp.status == status
        assert resp.headers["X-Status"] == str(status)
        assert await resp.read() == b""


async def test_status_and_reason_pass_through(proxy, client) -> None:
    async with client.get(proxy.at("/api/status/418")) as resp:
        assert resp.status == 418
        assert resp.reason == "I'm a Teapot"
        assert await resp.text() == "status 418"


async def test_binary_bodies_both_ways(proxy, upstream, client) -> None:
    body = bytes(range(256)) * 1000 + b"\x00\xff\r\n"
    async with client.post(
        proxy.at("/api/bin"), data=body, headers={"Content-Type": "application/octet-stream"}
    ) as resp:
        assert await resp.read() == body
    assert upstream.last.body == body
    assert upstream.last.headers["Content-Length"] == str(len(body))


async def test_chunked_upload_is_streamed(proxy, upstream, client) -> None:
    async def gen():
        for i in range(50):
            yield bytes([i]) * 1000

    async with client.post(proxy.at("/api/up"), data=gen()) as resp:
        assert resp.status == 200
    assert upstream.last.body == b"".join(bytes([i]) * 1000 for i in range(50))
    assert upstream.last.headers.get("Transfer-Encoding") == "chunked"


async def test_repeated_headers_and_cookies_kept(proxy, client) -> None:
    async with client.get(proxy.at("/api/cookies")) as resp:
        assert resp.headers.getall("Set-Cookie") == ["a=1; Path=/", "b=2; Path=/"]
        assert resp.headers.getall("X-Multi") == ["one", "two"]


async def test_repeated_request_headers_kept(proxy, upstream, client) -> None:
    await (await client.get(proxy.at("/api/x"), headers=[("X-Rep", "1"), ("X-Rep", "2")])).read()
    assert upstream.last.headers.getall("X-Rep") == ["1", "2"]


async def test_compressed_body_passes_untouched(proxy, upstream, client) -> None:
    async with client.get(proxy.at("/api/gzip"), headers={"Accept-Encoding": "gzip"}) as resp:
        raw = await resp.read()
        assert resp.headers["Content-Encoding"] == "gzip"
        assert int(resp.headers["Content-Length"]) == len(raw)
    assert gzip.decompress(raw) == b"hello compressed world " * 100
    assert upstream.last.headers["Accept-Encoding"] == "gzip"


async def test_no_auto_headers_added(proxy, upstream) -> None:
    raw = await raw_exchange(proxy.url, b"GET /api/x HTTP/1.1\r\nHost: localhost\r\nContent-Length: 0\r\n\r\n")
    assert raw.startswith(b"HTTP/1.1 200")
    sent = upstream.last.headers
    assert "User-Agent" not in sent and "Accept" not in sent and "Accept-Encoding" not in sent


async def test_host_forwarded_and_request_id(proxy, upstream, client) -> None:
    async with client.get(proxy.at("/api/x"), headers={"X-Request-ID": "my-id-1", "Host": "localhost:8080"}) as resp:
        assert resp.headers["X-Request-ID"] == "my-id-1"
    seen = upstream.last.headers
    assert seen["Host"] == upstream.url.removeprefix("http://")
    assert seen["X-Forwarded-Host"] == "localhost:8080"
    assert seen["X-Forwarded-Proto"] == "http"
    assert seen["X-Forwarded-For"] == "127.0.0.1"
    assert seen["X-Request-ID"] == "my-id-1"
    async with client.get(proxy.at("/api/x")) as resp:
        generated = resp.headers["X-Request-ID"]
    assert len(generated) == 32 and upstream.last.headers["X-Request-ID"] == generated


async def test_hop_by_hop_request_headers_dropped(proxy, upstream) -> None:
    raw = await raw_exchange(
        proxy.url,
        b"GET /api/x HTTP/1.1\r\nHost: localhost\r\nConnection: keep-alive, X-Secret"
        b"\r\nX-Secret: 1\r\nKeep-Alive: 5\r\nTE: trailers\r\nUpgrade: foo\r\n"
        b"Proxy-Authorization: Basic eA==\r\nContent-Length: 0\r\n\r\n",
    )
    assert raw.startswith(b"HTTP/1.1 200")
    for name in ("X-Secret", "Keep-Alive", "TE", "Upgrade", "Proxy-Authorization"):
        assert name not in upstream.last.headers


async def test_static_headers_injected_and_client_credentials_stripped(proxy, upstream, client) -> None:
    await (
        await client.get(
            proxy.at("/api/x"), headers={"Authorization": "Bearer client-token", "X-API-KEY": "client-key"}
        )
    ).read()
    seen = upstream.last.headers
    assert seen.getall("x-api-key") == ["injected-key"]
    assert "Authorization" not in seen


async def test_pass_client_auth(make_proxy, upstream, client) -> None:
    proxy = await make_proxy(cfg(upstream.url, pass_client_auth=True))
    await (await client.get(proxy.at("/api/x"), headers={"Authorization": "Bearer client-token"})).read()
    assert upstream.last.headers["Authorization"] == "Bearer client-token"


@pytest.mark.parametrize(
    ("kind", "expected"),
    [("abs", "{proxy}/api/landed?x=1"), ("path", "/api/landed"), ("elsewhere", "https://example.org/somewhere")],
)
async def test_redirects_not_followed_and_location_rewritten(proxy, client, kind, expected) -> None:
    async with client.get(proxy.at(f"/api/redirect/{kind}"), allow_redirects=False) as resp:
        assert resp.status == 302
        assert resp.headers["Location"] == expected.format(proxy=proxy.url)


async def test_unknown_prefix_json_404(proxy, client) -> None:
    async with client.get(proxy.at("/nope/x"), headers={"X-Request-ID": "r1"}) as resp:
        assert resp.status == 404
        body = await resp.json()
    assert body == {
        "error": {
            "code": "route_not_found",
            "route": None,
            "request_id": "r1",
            "message": "no route serves this path; available prefixes: /api",
        }
    }


@pytest.mark.parametrize(
    "path", ["/api/../x", "/api/%2e%2e/x", "/api/%2E%2e/x", "/api/a/..%2f..%2fx", "/api/%252e%252e/etc", "/api/.%2e"]
)
async def test_traversal_rejected_over_the_wire(proxy, upstream, path) -> None:
    raw = await raw_exchange(proxy.url, f"GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n".encode())
    assert raw.startswith(b"HTTP/1.1 400")
    assert b'"code": "bad_path"' in raw
    assert upstream.seen == []


@pytest.mark.parametrize(
    ("line", "status", "code"),
    [
        (b"GET http://evil.example/api/x HTTP/1.1", b"400", b"absolute_form_refused"),
        (b"GET http://localhost/api/x HTTP/1.1", b"400", b"absolute_form_refused"),
        (b"CONNECT evil.example:443 HTTP/1.1", b"405", b"method_not_allowed"),
        (b"OPTIONS * HTTP/1.1", b"400", b"bad_path"),
    ],
)
async def test_never_an_open_proxy(proxy, upstream, line, status, code) -> None:
    raw = await raw_exchange(proxy.url, line + b"\r\nHost: localhost\r\n\r\n")
    assert raw.split(b" ")[1] == status
    assert code in raw
    assert upstream.seen == []


async def test_upstream_unreachable_502(make_proxy, client) -> None:
    proxy = await make_proxy({"routes": {"dead": {"upstream": "http://127.0.0.1:9"}}})
    async with client.get(proxy.at("/dead/x")) as resp:
        assert resp.status == 502
        body = await resp.json()
    assert body["error"]["code"] == "upstream_unreachable"
    assert body["error"]["route"] == "dead"


async def test_upstream_hang_504_and_other_routes_keep_serving(make_proxy, upstream, client) -> None:
    proxy = await make_proxy(
        {"routes": {"slow": {"upstream": upstream.url, "read_timeout": 0.2}, "ok": {"upstream": upstream.url}}}
    )
    slow = asyncio.ensure_future(client.get(proxy.at("/slow/hang")))
    await upstream.hang_started.wait()
    async with client.get(proxy.at("/ok/fine")) as resp:
        assert resp.status == 200
    resp = await slow
    assert resp.status == 504
    assert (await resp.json())["error"]["code"] == "upstream_timeout"


@pytest.mark.parametrize("kind", ["cl", "chunked"])
async def test_upstream_reset_mid_body_breaks_the_client_response(proxy, client, kind) -> None:
    async with client.get(proxy.at(f"/api/reset/{kind}")) as resp:
        assert resp.status == 200
        with pytest.raises(aiohttp.ClientPayloadError):
            await resp.read()
    async with client.get(proxy.at("/api/after")) as resp:  # the proxy keeps serving
        assert resp.status == 200


async def test_client_disconnect_cancels_upstream_request(proxy, upstream) -> None:
    host, port = proxy.url.removeprefix("http://").split(":")
    _, writer = await asyncio.open_connection(host, int(port))
    writer.write(b"GET /api/hang HTTP/1.1\r\nHost: localhost\r\n\r\n")
    await writer.drain()
    await upstream.hang_started.wait()
    writer.close()
    await asyncio.wait_for(upstream.cancelled_event.wait(), 5)
    assert upstream.cancelled == 1


async def test_streamed_response_chunks_arrive_unbuffered(proxy, upstream, client) -> None:
    async with client.get(proxy.at("/api/chunks/3")) as resp:
        for i in range(3):
            upstream.chunk_gate.put_nowait(None)
            assert await asyncio.wait_for(resp.content.readuntil(b"\n\n"), 5) == f"data: {i}\n\n".encode()


async def test_keepalive_pool_reuses_upstream_connections(proxy, upstream, client) -> None:
    for _ in range(5):
        await (await client.get(proxy.at("/api/x"))).read()
    assert len(upstream.seen) == 5 and len({seen.peer for seen in upstream.seen}) == 1  # one connection, kept alive


QUERY_CHARS = st.sampled_from([*"abcXYZ019-._~+=&/?:@!$'()*,;", "%2F", "%20", "%25", "%2B", "%E2%82%AC"])


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    query=st.lists(QUERY_CHARS, max_size=30).map("".join),
    path=st.lists(st.sampled_from(["a", "b%2Fc", "%20", "x+y", "%E2%82%AC", "~"]), max_size=4).map("/".join),
)
async def test_path_and_query_round_trip_exactly(proxy, upstream, query, path) -> None:
    target = f"/api/{path}?{query}" if query else f"/api/{path}"
    raw = await raw_exchange(proxy.url, f"GET {target} HTTP/1.1\r\nHost: localhost\r\n\r\n".encode())
    assert raw.startswith(b"HTTP/1.1 200"), raw[:200]
    assert upstream.last.raw_path == "/base" + target[len("/api") :]


async def test_query_strings_exact(proxy, upstream, client) -> None:
    target = "/api/s?q=a+b&q=c%2Fd&empty=&flag&q=%20"
    raw = await raw_exchange(proxy.url, f"GET {target} HTTP/1.1\r\nHost: localhost\r\n\r\n".encode())
    assert raw.startswith(b"HTTP/1.1 200")
    assert upstream.last.raw_path == "/base/s?q=a+b&q=c%2Fd&empty=&flag&q=%20"
