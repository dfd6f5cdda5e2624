"""Egress (corporate forward) proxies, end to end: a real tinyproxy between authproxy and its upstreams.

Every route here injects a token; the fake upstream sees it and tinyproxy's `Via` header (plain http, absolute form)
or tinyproxy's own log (`CONNECT host:port`, https and websockets) proves the path the request took.
"""

from __future__ import annotations

import base64
import json
import ssl
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from multidict import CIMultiDict
from yarl import URL

from authproxy.upstream.egress import parse_egress
from authproxy.upstream.transport import Endpoint
from tests.fakes.certs import ScratchCA
from tests.fakes.forward_proxy import TinyProxy, needs_tinyproxy
from tests.fakes.redis_server import free_port

pytestmark = needs_tinyproxy

USER, PASSWORD = "egress-user", "pr0xy-Secret-42"
BASIC = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
TRANSPORTS = ("native", "aiohttp")


@pytest.fixture(scope="session")
def tinyproxy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TinyProxy]:
    proxy = TinyProxy(tmp_path_factory.mktemp("tinyproxy")).start()
    yield proxy
    proxy.stop()


@pytest.fixture(scope="session")
def auth_proxy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TinyProxy]:
    proxy = TinyProxy(tmp_path_factory.mktemp("tinyproxy-auth"), basic_auth=(USER, PASSWORD)).start()
    yield proxy
    proxy.stop()


@pytest.fixture(scope="session")
def strict_proxy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TinyProxy]:
    """Allows CONNECT to port 1 only: every tunnel these tests ask for is refused (403)."""
    proxy = TinyProxy(tmp_path_factory.mktemp("tinyproxy-strict"), connect_ports=(1,)).start()
    yield proxy
    proxy.stop()


@pytest.fixture
async def tls_upstream(tmp_path: Path) -> AsyncIterator[tuple[str, str]]:
    """An https upstream (certificate from a scratch CA) that echoes the Authorization it got: (url, ca file)."""
    ca = ScratchCA(tmp_path)
    issued = ca.issue("upstream")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(issued.cert, issued.key)

    async def handle(request: web.Request) -> web.Response:
        return web.json_response(
            {"authorization": request.headers.get("Authorization"), "via": request.headers.get("Via")}
        )

    app = web.Application()
    app.router.add_get("/{tail:.*}", handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0, ssl_context=context).start()
    yield f"https://127.0.0.1:{runner.addresses[0][1]}", str(ca.files.cert)
    await runner.cleanup()


def route(upstream: str, transport: str = "native", **more: Any) -> dict[str, Any]:
    return {"upstream": upstream, "transport": transport, "auth": {"grant": "static", "token": "tok-123"}, **more}


async def status_of(client: aiohttp.ClientSession, proxy: Any) -> dict[str, Any]:
    async with client.get(proxy.at("/-/status")) as resp:
        assert resp.status == 200
        return {r["name"]: r for r in (await resp.json())["routes"]}


@pytest.mark.parametrize("kind", TRANSPORTS)
async def test_plain_http_goes_through_the_proxy_in_absolute_form(
    kind, tinyproxy, upstream, make_proxy, client
) -> None:
    proxy = await make_proxy({"egress_proxy": {"url": tinyproxy.url}, "routes": {"api": route(upstream.url, kind)}})
    async with client.get(proxy.at("/api/hello?x=1")) as resp:
        assert resp.status == 200
    seen = upstream.last
    assert seen.raw_path == "/hello?x=1"
    assert seen.headers["Authorization"] == "Bearer tok-123"
    assert "tinyproxy" in seen.headers["Via"]
    assert "Proxy-Authorization" not in seen.headers
    assert tinyproxy.wait_for(f"GET {upstream.url}/hello?x=1 HTTP/1.1")
    assert (await status_of(client, proxy))["api"]["egress"] == {"via": tinyproxy.url, "from": "egress_proxy.url"}


@pytest.mark.parametrize("kind", TRANSPORTS)
async def test_https_goes_through_connect_with_tls_to_the_origin(kind, tinyproxy, tls_upstream, make_proxy, client):
    url, ca_file = tls_upstream
    config = {"routes": {"api": route(url, kind, tls={"ca_file": ca_file}, egress_proxy={"url": tinyproxy.url})}}
    proxy = await make_proxy(config)
    for _ in range(2):  # the second request reuses the tunnelled connection
        async with client.get(proxy.at("/api/x")) as resp:
            assert resp.status == 200
            # TLS end to end: tinyproxy only relays bytes, so it adds no Via
            assert await resp.json() == {"authorization": "Bearer tok-123", "via": None}
    port = url.rsplit(":", 1)[1]
    assert tinyproxy.wait_for(f"CONNECT 127.0.0.1:{port} HTTP/1.1")
    egress = (await status_of(client, proxy))["api"]["egress"]
    assert egress == {"via": tinyproxy.url, "from": "routes.api.egress_proxy.url"}


@pytest.mark.parametrize("kind", TRANSPORTS)
async def test_token_requests_go_through_the_proxy(kind, tinyproxy, token_server, upstream, make_proxy, client):
    api = route(upstream.url, kind)
    api["auth"] = {"grant": "client_credentials", "token_url": token_server.url, "client_id": "c", "client_secret": "s"}
    proxy = await make_proxy({"egress_proxy": {"url": tinyproxy.url}, "routes": {"api": api}})
    async with client.get(proxy.at("/api/x")) as resp:
        assert resp.status == 200
    assert len(token_server.requests) == 1
    assert "tinyproxy" in token_server.requests[0].headers["Via"]
    assert upstream.last.headers["Authorization"] == "Bearer at-1"
    assert tinyproxy.wait_for(f"POST {token_server.url} HTTP/1.1")
    status = (await status_of(client, proxy))["api"]
    assert status["token_egress"] == {"via": tinyproxy.url, "from": "egress_proxy.url"}


@pytest.mark.parametrize("kind", TRANSPORTS)
async def test_a_websocket_goes_through_a_connect_tunnel(kind, tinyproxy, upstream, make_proxy, client) -> None:
    proxy = await make_proxy({"egress_proxy": {"url": tinyproxy.url}, "routes": {"api": route(upstream.url, kind)}})
    async with client.ws_connect(proxy.at("/api/ws")) as ws:
        await ws.send_str("hi")
        assert (await ws.receive()).data == "echo:hi"
    assert upstream.seen[-1].headers["Authorization"] == "Bearer tok-123"
    assert tinyproxy.wait_for(f"CONNECT 127.0.0.1:{upstream.url.rsplit(':', 1)[1]} HTTP/1.1")
    async with client.get(proxy.at("/api/after")) as resp:  # the tunnel was used once; plain requests still work
        assert resp.status == 200
    assert "tinyproxy" in upstream.last.headers["Via"]


@pytest.mark.parametrize("kind", TRANSPORTS)
@pytest.mark.parametrize(
    "secure, credentials, answer, blamed",
    [
        # tinyproxy answers wrong credentials with 401 (to CONNECT: the proxy's too), missing ones with 407
        (
            True,
            f"{USER}:wrong-{PASSWORD}@",
            "401",
            "the credentials set by the user:password in routes.bad.egress_proxy.url",
        ),
        (False, "", "407", "none are set: add egress_proxy.username and egress_proxy.password"),
        (True, "", "407", "none are set: add egress_proxy.username and egress_proxy.password"),
    ],
)
async def test_basic_auth_proxy_right_and_wrong_credentials(
    kind, secure, credentials, answer, blamed, auth_proxy, upstream, tls_upstream, make_proxy, client, logs, tmp_path
) -> None:
    url, ca_file = tls_upstream if secure else (upstream.url, None)
    tls = {"tls": {"ca_file": ca_file}} if ca_file else {}
    password_file = tmp_path / "proxy-password"
    password_file.write_text(PASSWORD + "\n")
    password_file.chmod(0o600)
    good = {"url": auth_proxy.url, "username": USER, "password_file": str(password_file)}
    bad = {"url": auth_proxy.url.replace("://", f"://{credentials}")}
    config = {
        "routes": {
            "good": route(url, kind, egress_proxy=good, **tls),
            "bad": route(url, kind, egress_proxy=bad, **tls),
        }
    }
    proxy = await make_proxy(config)
    async with client.get(proxy.at("/good/x")) as resp:
        assert resp.status == 200
    async with client.get(proxy.at("/bad/x")) as resp:
        assert resp.status == 502
        body = await resp.json()
    error = body["error"]
    assert error["code"] == "egress_proxy_refused"
    shown = auth_proxy.url.replace("://", f"://{USER}:********@" if credentials else "://")
    assert error["message"].startswith(
        f"the egress proxy {shown} (set by routes.bad.egress_proxy.url) answered {answer}"
    )
    assert blamed in error["message"]
    status = await status_of(client, proxy)
    assert status["good"]["egress"]["via"] == auth_proxy.url.replace("://", f"://{USER}:********@")
    for text in (json.dumps(body), json.dumps(status), logs.text):
        assert PASSWORD not in text
        assert BASIC not in text  # nor its Basic form


@pytest.mark.parametrize("kind", TRANSPORTS)
async def test_a_refused_connect_is_a_502_naming_the_proxy(kind, strict_proxy, tls_upstream, make_proxy, client):
    url, ca_file = tls_upstream
    proxy = await make_proxy(
        {"egress_proxy": {"url": strict_proxy.url}, "routes": {"api": route(url, kind, tls={"ca_file": ca_file})}}
    )
    async with client.get(proxy.at("/api/x")) as resp:
        assert resp.status == 502
        error = (await resp.json())["error"]
    assert error["code"] == "egress_proxy_refused"
    port = url.rsplit(":", 1)[1]
    assert error["message"].startswith(
        f"the egress proxy {strict_proxy.url} (set by egress_proxy.url) refused to tunnel to 127.0.0.1:{port} "
        f"(HTTP 403); check that it allows CONNECT to port {port}"
    )


@pytest.mark.parametrize("kind", TRANSPORTS)
async def test_an_unreachable_proxy_is_a_502_naming_it(kind, upstream, make_proxy, client) -> None:
    dead = f"http://{USER}:{PASSWORD}@127.0.0.1:{free_port()}"
    proxy = await make_proxy({"routes": {"api": route(upstream.url, kind)}}, environ={"HTTP_PROXY": dead})
    async with client.get(proxy.at("/api/x")) as resp:
        assert resp.status == 502
        error = (await resp.json())["error"]
    assert error["code"] == "egress_proxy_unreachable"
    shown = dead.replace(PASSWORD, "********")
    assert error["message"].startswith(f"cannot connect to the egress proxy {shown} (set by env HTTP_PROXY): ")
    assert "Connection refused" in error["message"]
    assert PASSWORD not in error["message"]
    assert upstream.seen == []


@pytest.mark.parametrize(
    "environ",
    [
        {"http_proxy": "PROXY"},
        {"HTTP_PROXY": "PROXY"},
        {"http_proxy": "PROXY", "HTTP_PROXY": "http://127.0.0.1:9"},  # lower case first, as curl and urllib
    ],
)
async def test_the_environment_variables_in_either_case(environ, tinyproxy, upstream, make_proxy, client) -> None:
    environ = {k: v.replace("PROXY", tinyproxy.url) for k, v in environ.items()}
    proxy = await make_proxy({"routes": {"api": route(upstream.url)}}, environ=environ)
    async with client.get(proxy.at("/api/x")) as resp:
        assert resp.status == 200
    assert "tinyproxy" in upstream.last.headers["Via"]
    name = next(iter(environ))
    assert (await status_of(client, proxy))["api"]["egress"] == {"via": tinyproxy.url, "from": f"env {name}"}


async def test_https_proxy_from_the_process_environment(
    tinyproxy, tls_upstream, make_proxy, client, monkeypatch
) -> None:
    url, ca_file = tls_upstream
    monkeypatch.setenv("https_proxy", tinyproxy.url)
    proxy = await make_proxy({"routes": {"api": route(url, tls={"ca_file": ca_file})}})
    async with client.get(proxy.at("/api/x")) as resp:
        assert resp.status == 200
    assert tinyproxy.wait_for(f"CONNECT 127.0.0.1:{url.rsplit(':', 1)[1]} HTTP/1.1")
    assert (await status_of(client, proxy))["api"]["egress"] == {"via": tinyproxy.url, "from": "env https_proxy"}


@pytest.mark.parametrize("no_proxy", ["127.0.0.1", "127.0.0.0/8", "PORT", "*"])
async def test_no_proxy_sends_a_host_direct(no_proxy, upstream, make_proxy, client) -> None:
    no_proxy = no_proxy.replace("PORT", upstream.url.removeprefix("http://"))
    dead = f"http://127.0.0.1:{free_port()}"  # never asked: NO_PROXY matches
    environ = {"HTTP_PROXY": dead, "NO_PROXY": f"example.com, {no_proxy}"}
    proxy = await make_proxy({"routes": {"api": route(upstream.url)}}, environ=environ)
    async with client.get(proxy.at("/api/x")) as resp:
        assert resp.status == 200
    assert "Via" not in upstream.last.headers
    egress = (await status_of(client, proxy))["api"]["egress"]
    assert egress == {"via": "direct", "from": f"env NO_PROXY entry {no_proxy!r}"}


async def test_config_wins_over_the_environment(tinyproxy, upstream, make_proxy, client) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    config = {
        "egress_proxy": {"url": tinyproxy.url, "no_proxy": ["other.example"]},
        "routes": {"api": route(upstream.url), "direct": route(upstream.url, egress_proxy={"url": "none"})},
    }
    proxy = await make_proxy(config, environ={"HTTP_PROXY": dead, "NO_PROXY": "127.0.0.1"})
    async with client.get(proxy.at("/api/x")) as resp:
        assert resp.status == 200
    assert "tinyproxy" in upstream.last.headers["Via"]
    async with client.get(proxy.at("/direct/x")) as resp:
        assert resp.status == 200
    assert "Via" not in upstream.last.headers
    status = await status_of(client, proxy)
    assert status["api"]["egress"] == {"via": tinyproxy.url, "from": "egress_proxy.url"}
    assert status["direct"]["egress"] == {"via": "direct", "from": "routes.direct.egress_proxy.url: none"}


async def test_a_token_request_through_an_unreachable_proxy_names_it(token_server, upstream, make_proxy, client, logs):
    dead = f"http://{USER}:{PASSWORD}@127.0.0.1:{free_port()}"
    api = route(upstream.url)
    api["auth"] = {"grant": "client_credentials", "token_url": token_server.url, "client_id": "c", "client_secret": "s"}
    api["auth"]["max_wait"] = 5
    proxy = await make_proxy({"egress_proxy": {"url": dead}, "routes": {"api": api}})
    async with client.get(proxy.at("/api/x")) as resp:
        assert resp.status == 503
        body = await resp.text()
    assert json.loads(body)["error"]["code"] == "token_unavailable"
    named = f"cannot connect to the egress proxy {dead.replace(PASSWORD, '********')} (set by egress_proxy.url)"
    assert named in logs.text  # the token engine's warning, and /-/status, say why
    status = (await status_of(client, proxy))["api"]
    assert named in status["token"]["last_error_detail"]
    assert PASSWORD not in json.dumps(status)
    assert token_server.requests == [] and upstream.seen == []
    assert PASSWORD not in body + logs.text and BASIC not in logs.text


async def test_proxied_and_direct_connections_to_one_origin_are_pooled_apart(tinyproxy, upstream, make_transport):
    """Both transports (the fixture runs each): the same origin direct and through the proxy, twice each, in turns;
    each request finds the kept-alive connection of its own kind (Via says which), so two connections in all."""
    transport = make_transport(limit=8, rest=0.0)
    egress = parse_egress(tinyproxy.url, "egress_proxy.url", None, None, "egress_proxy")
    direct, proxied = Endpoint(URL(upstream.url)), Endpoint(URL(upstream.url), egress=egress)
    for endpoint in (direct, proxied, direct, proxied):
        response = await transport.request(
            endpoint, "GET", "/x", CIMultiDict(), None, connect_timeout=5, read_timeout=5
        )
        assert response.status == 200
        async for _ in response.chunks():
            pass
        response.release()
    vias = ["tinyproxy" in seen.headers.get("Via", "") for seen in upstream.seen]
    assert vias == [False, True, False, True]
    assert transport.connections() == {"open": 2, "idle": 2, "waiting": 0}
