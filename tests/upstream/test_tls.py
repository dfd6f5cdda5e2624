"""TLS: upstream verification by default, a private CA, mutual TLS, verify off, and HTTPS on the listener."""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web

from tests.fakes.certs import ScratchCA


@pytest.fixture
def ca(tmp_path) -> ScratchCA:
    return ScratchCA(tmp_path)


async def tls_upstream(ca: ScratchCA, *, require_client_cert: bool = False) -> tuple[web.AppRunner, str]:
    server = ca.issue("upstream")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(server.cert, server.key)
    if require_client_cert:
        context.verify_mode = ssl.CERT_REQUIRED
        context.load_verify_locations(ca.files.cert)

    async def handle(request: web.Request) -> web.Response:
        peer = request.transport.get_extra_info("peercert") if request.transport else None
        subject = dict(x[0] for x in peer["subject"]) if peer else {}
        return web.json_response({"client_cert": subject.get("commonName")})

    app = web.Application()
    app.router.add_get("/{tail:.*}", handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0, ssl_context=context).start()
    return runner, f"https://127.0.0.1:{runner.addresses[0][1]}"


@pytest.fixture
async def upstream_tls(ca) -> AsyncIterator[str]:
    runner, url = await tls_upstream(ca)
    yield url
    await runner.cleanup()


async def test_unknown_ca_is_refused_by_default(make_proxy, upstream_tls, client) -> None:
    proxy = await make_proxy({"routes": {"api": {"upstream": upstream_tls}}})
    async with client.get(proxy.at("/api/x")) as resp:
        assert resp.status == 502
        body = await resp.json()
    assert body["error"]["code"] == "upstream_unreachable"


async def test_private_ca_file(make_proxy, upstream_tls, ca, client) -> None:
    proxy = await make_proxy({"routes": {"api": {"upstream": upstream_tls, "tls": {"ca_file": str(ca.files.cert)}}}})
    async with client.get(proxy.at("/api/x")) as resp:
        assert resp.status == 200
        assert await resp.json() == {"client_cert": None}


async def test_verify_false_works_with_a_warning(make_proxy, upstream_tls, client, logs) -> None:
    proxy = await make_proxy({"routes": {"api": {"upstream": upstream_tls, "tls": {"verify": False}}}})
    async with client.get(proxy.at("/api/x")) as resp:
        assert resp.status == 200
    assert [e["route"] for e in logs.events if e["event"] == "tls_verification_off"] == ["api"]


async def test_mutual_tls(make_proxy, ca, client) -> None:
    runner, url = await tls_upstream(ca, require_client_cert=True)
    try:
        mine = ca.issue("payments-client", client=True)
        without = await make_proxy({"routes": {"api": {"upstream": url, "tls": {"ca_file": str(ca.files.cert)}}}})
        async with client.get(without.at("/api/x")) as resp:
            assert resp.status == 502
        proxy = await make_proxy(
            {
                "routes": {
                    "api": {
                        "upstream": url,
                        "tls": {"ca_file": str(ca.files.cert), "cert_file": str(mine.cert), "key_file": str(mine.key)},
                    }
                }
            }
        )
        async with client.get(proxy.at("/api/x")) as resp:
            assert resp.status == 200
            assert await resp.json() == {"client_cert": "payments-client"}
    finally:
        await runner.cleanup()


async def test_a_token_endpoint_on_the_upstreams_origin_uses_the_routes_tls(make_proxy, ca, client) -> None:
    """`token_url: /o/token/` on a private-CA upstream: the token request trusts the route's CA too."""
    server = ca.issue("upstream")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(server.cert, server.key)

    async def token(request: web.Request) -> web.Response:
        return web.json_response({"access_token": "private-at", "token_type": "bearer", "expires_in": 600})

    async def api(request: web.Request) -> web.Response:
        return web.json_response({"authorization": request.headers.get("Authorization")})

    app = web.Application()
    app.router.add_post("/o/token/", token)
    app.router.add_get("/{tail:.*}", api)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0, ssl_context=context).start()
    try:
        url = f"https://127.0.0.1:{runner.addresses[0][1]}"
        auth = {"grant": "client_credentials", "token_url": "/o/token/", "client_id": "c", "client_secret": "s"}
        route = {"upstream": url, "tls": {"ca_file": str(ca.files.cert)}, "auth": auth}
        proxy = await make_proxy({"routes": {"api": route}})
        async with client.get(proxy.at("/api/x")) as resp:
            assert resp.status == 200, await resp.text()
            assert await resp.json() == {"authorization": "Bearer private-at"}
    finally:
        await runner.cleanup()


async def test_https_listener(make_proxy, upstream, ca) -> None:
    server = ca.issue("proxy")
    proxy = await make_proxy(
        {
            "tls": {"cert_file": str(server.cert), "key_file": str(server.key)},
            "routes": {"api": {"upstream": upstream.url}},
        }
    )
    assert proxy.url.startswith("https://")
    trust = ssl.create_default_context(cafile=str(ca.files.cert))
    async with aiohttp.ClientSession() as session, session.get(proxy.at("/api/x"), ssl=trust) as resp:
        assert resp.status == 200
    assert upstream.last.headers["X-Forwarded-Proto"] == "https"


def test_tls_config_errors(tmp_path) -> None:
    from authproxy.config.load import parse_config
    from authproxy.errors import ConfigError

    with pytest.raises(ConfigError) as info:
        parse_config(
            f"tls: {{cert_file: {tmp_path}/nope.crt}}\nroutes:\n  api:\n    upstream: https://x.example\n"
            f"    tls: {{ca_file: {tmp_path}/missing.pem, key_file: {tmp_path}/k}}\n",
            env={},
        )
    found = dict(info.value.problems)
    assert found["tls"] == "give both cert_file and key_file"
    assert "no such file" in found["tls.cert_file"] and "no such file" in found["routes.api.tls.ca_file"]
    assert found["routes.api.tls"] == "give both cert_file and key_file"
