"""Sentinel secrets (issue 6): one scenario with every kind of traffic, and not one secret shown.

Every secret in the config (client secrets, refresh tokens, static tokens, injected header
values, extra params and headers, a private key, team keys), every access and refresh token
the token server issues and every secret a client sends start with `SENTINEL`. After the
scenario, no captured log line (ours or the stdlib's), no error body, no admin answer and no
`authproxy check` output may contain one.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import logging
import subprocess
import sys
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from authproxy.config.masking import secret_values
from authproxy.errors import ConfigError
from tests.conftest import LogCapture, RunningProxy, wait_until
from tests.fakes.clock import FakeClock
from tests.fakes.token_server import RecordedRequest, Reply, TokenServer
from tests.fakes.upstream import FakeUpstream

S = "SENTINEL"
CLIENT_KEY = f"{S}-team-client-key"
ADMIN_KEY = f"{S}-admin-key"
CLIENT_HEADERS = {
    "X-Authproxy-Key": CLIENT_KEY,
    "X-API-Key": f"{S}-client-sent-api-key",
    "Cookie": f"session={S}-client-cookie",
}
ADMIN_HEADERS = {"Authorization": f"Bearer {ADMIN_KEY}"}
FERNET_KEY = base64.urlsafe_b64encode(base64.urlsafe_b64decode(S) + bytes(range(26))).decode()  # "SENTINEL..."
QUERY = f"code={S}-query-code&access_token={S}-query-at&refresh_token={S}-query-rt&state=1"


def private_key_pem() -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


def token_answers(server: TokenServer) -> Any:
    """The token server: sentinel tokens on /ok, and failures that echo what they were sent."""
    issued = itertools.count(1)

    def answer(request: RecordedRequest) -> Reply:
        echo = f"you sent {request.body.decode(errors='replace')} with {request.headers.get('Authorization')}"
        if request.path == "/fail/client":
            return Reply.error("invalid_client", f"client secret wrong: {echo}", status=401)
        if request.path == "/fail/busy":
            return Reply.error("temporarily_unavailable", f"busy; {echo}", status=503)
        if request.path == "/fail/request":
            return Reply.error("invalid_request", f"bad assertion; {echo}", status=400)
        if request.path == "/fail/grant":
            return Reply.error("invalid_grant", f"refresh token revoked: {echo}", status=400)
        if request.path == "/fail/html":
            return Reply.text(f"<html><body>500 {echo}</body></html>".encode(), status=500, content_type="text/html")
        n = next(issued)
        return Reply.token(f"{S}-issued-at-{n}", 3600, refresh_token=f"{S}-issued-rt-{n}")

    return answer


def scenario_config(upstream: FakeUpstream, server: TokenServer, pem: str, *, rotated: bool = False) -> dict[str, Any]:
    def cc(path: str, client_id: str, secret: str, **auth: Any) -> dict[str, Any]:
        return {
            "grant": "client_credentials",
            "token_url": server.base_url + path,
            "client_id": client_id,
            "client_secret": secret,
            **auth,
        }

    up = upstream.url
    routes: dict[str, Any] = {
        "basic": {
            "upstream": up,
            "headers": {"x-api-key": f"{S}-api-key-basic", "x-vendor-secret": f"{S}-vendor-header"},
            "auth": cc(
                "/ok",
                "cid-basic",
                f"{S}-secret+/=&%-basic" + ("-rotated" if rotated else ""),
                scope="read write",
                extra_params={"resource_key": f"{S}-extra-param"},
                extra_headers={"X-Token-Key": f"{S}-extra-header"},
            ),
        },
        "post_json": {
            "upstream": up,
            "auth": cc(
                "/ok", "cid-post", f"{S}-secret+/=&%-post", client_auth="client_secret_post", request_format="json"
            ),
        },
        "refresh": {
            "upstream": up,
            "auth": {
                **cc("/ok", "cid-refresh", f"{S}-secret-refresh"),
                "grant": "refresh_token",
                "refresh_token": f"{S}-configured-rt",
            },
        },
        "authcode": {
            "upstream": up,
            "auth": {
                **cc("/ok", "cid-code", f"{S}-secret-code"),
                "grant": "authorization_code",
                "authorize_url": server.base_url + "/authorize",
                "refresh_token": f"{S}-configured-code-rt",
            },
        },
        "public": {
            "upstream": up,
            "auth": {
                "grant": "refresh_token",
                "token_url": server.base_url + "/ok",
                "client_auth": "none",
                "client_id": "cid-public",
                "refresh_token": f"{S}-public-rt",
            },
        },
        "pkjwt": {"upstream": up, "auth": cc("/ok", "cid-pk", None, client_auth="private_key_jwt", private_key=pem)},
        "hsjwt": {
            "upstream": up,
            "auth": cc("/ok", "cid-hs", f"{S}-secret-hs-0123456789abcdef0123456789", client_auth="client_secret_jwt"),
        },
        "static": {
            "upstream": up,
            "headers": {"x-api-key": f"{S}-api-key-static"},
            "auth": {"grant": "static", "token": f"{S}-static-token"},
        },
        "fail_client": {"upstream": up, "auth": cc("/fail/client", "cid-fc", f"{S}-secret+/=&%-fail-client")},
        "fail_busy": {
            "upstream": up,
            "auth": cc(
                "/fail/busy",
                "cid-fb",
                f"{S}-secret+/=&%-fail-busy",
                client_auth="client_secret_post",
                request_format="json",
            ),
        },
        "fail_form": {  # echoes its form: the secret percent-encoded, not as configured
            "upstream": up,
            "auth": cc("/fail/busy", "cid-ff", f"{S}-secret+/=&%-fail-form", client_auth="client_secret_post"),
        },
        "fail_jwt": {
            "upstream": up,
            "auth": cc("/fail/request", "cid-fj", None, client_auth="private_key_jwt", private_key=pem),
        },
        "fail_html": {"upstream": up, "auth": cc("/fail/html", "cid-fh", f"{S}-secret-fail-html")},
        "fail_grant": {
            "upstream": up,
            "auth": {
                **cc("/fail/grant", "cid-fg", f"{S}-secret-fail-grant"),
                "grant": "refresh_token",
                "refresh_token": f"{S}-dead-rt",
            },
        },
        "dead": {"upstream": "http://127.0.0.1:9", "headers": {"x-api-key": f"{S}-api-key-dead"}},
        "slow": {
            "upstream": up,
            "read_timeout": 0.3,
            "headers": {"x-api-key": f"{S}-api-key-slow"},
            "auth": {"grant": "static", "token": f"{S}-static-slow"},
        },
    }
    for route in routes.values():
        if route.get("auth", {}).get("client_secret", "") is None:
            del route["auth"]["client_secret"]
    if rotated:
        routes["added"] = {"upstream": up, "auth": cc("/ok", "cid-added", f"{S}-secret-added")}
    return {
        "store": {"kind": "memory", "encryption_key": FERNET_KEY},
        "log": {"level": "debug"},
        "admin": {"key": ADMIN_KEY},
        "clients": {"dev": {"key": CLIENT_KEY}},
        "routes": routes,
    }


class Outputs:
    """Everything the proxy showed that must hold no secret, with where it came from."""

    def __init__(self) -> None:
        self.items: list[tuple[str, str]] = []
        self.answers: dict[str, tuple[int, str]] = {}  # "METHOD /path" (no query) -> (status, body)

    def add(self, where: str, text: str) -> None:
        self.items.append((where, text))


async def call(
    http: aiohttp.ClientSession, out: Outputs, method: str, url: str, *, headers: dict[str, str], **kwargs: Any
) -> int:
    """One request; every answer with status >= 400 is kept (error bodies, upstream's included)."""
    try:
        async with http.request(method, url, headers=headers, allow_redirects=False, **kwargs) as resp:
            body = await resp.text(errors="replace")
            out.answers[f"{method} {resp.url.path}"] = (resp.status, body)
            if resp.status >= 400:
                out.add(f"{method} {url} -> {resp.status}", f"{dict(resp.headers)} {body}")
            return resp.status
    except aiohttp.ClientPayloadError:  # a broken upstream body cuts the connection: nothing to read
        return -1


def run_check(path: Path) -> str:
    proc = subprocess.run(
        [sys.executable, "-m", "authproxy", "check", "--show-config", "-c", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode in (0, 2) and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    return proc.stdout + proc.stderr


async def test_no_sentinel_secret_is_ever_shown(
    make_proxy,
    upstream: FakeUpstream,
    token_server: TokenServer,
    fake_clock: FakeClock,
    client,
    logs: LogCapture,
    caplog: pytest.LogCaptureFixture,
    tmp_path: Path,
) -> None:
    caplog.set_level(logging.DEBUG)
    pem = private_key_pem()
    token_server.default = token_answers(token_server)
    path = tmp_path / "config.yaml"
    config = scenario_config(upstream, token_server, pem)
    proxy: RunningProxy = await make_proxy(config, clock=fake_clock, path=path)
    secrets = secret_values(proxy.config)
    derived = {s for s in secrets if not s.startswith(S) and s != pem and S in _unbase64(s)}  # Basic id:secret pairs
    assert all(s.startswith(S) or s == pem or s in derived for s in secrets), "every configured secret is a sentinel"
    assert pem in secrets and CLIENT_KEY in secrets and ADMIN_KEY in secrets
    out = Outputs()
    routes = list(config["routes"])

    async def settle_credentials() -> None:
        for name in routes:
            credential = proxy.credential(name)
            if credential is not None:
                await credential.wait_idle()

    await wait_until(lambda: len(token_server.requests) >= 10)
    await settle_credentials()

    # -- ordinary traffic on every route, with client-sent secrets in headers, query and body ------
    client_auth = {**CLIENT_HEADERS, "Authorization": f"Bearer {S}-client-bearer"}
    for name in routes:
        await call(client, out, "GET", proxy.at(f"/{name}/x?{QUERY}"), headers=CLIENT_HEADERS)
        await call(
            client,
            out,
            "POST",
            proxy.at(f"/{name}/form?{QUERY}"),
            headers=CLIENT_HEADERS,
            data=f"refresh_token={S}-body-rt&client_secret={S}-body-secret",
        )
    await call(client, out, "GET", proxy.at(f"/basic/x?{QUERY}"), headers=client_auth)  # key in X-Authproxy-Key

    # -- 401 retries (the upstream accepts no token: refresh, resend once, pass the 401 on) --------
    for name in ("basic", "post_json", "refresh", "authcode", "pkjwt", "hsjwt", "static"):
        await call(client, out, "GET", proxy.at(f"/{name}/auth/x?{QUERY}"), headers=CLIENT_HEADERS)
        await call(client, out, "POST", proxy.at(f"/{name}/auth403/x"), headers=CLIENT_HEADERS, data=b"x")

    # -- proxy errors and upstream failures ---------------------------------------------------------
    for target in ("/nope/x", "/basic/%2e%2e/x", "/dead/x", "/slow/hang", "/basic/reset/cl", "/basic/reset/chunked"):
        await call(client, out, "GET", proxy.at(f"{target}?{QUERY}"), headers=CLIENT_HEADERS)
    await call(client, out, "GET", proxy.at("/basic/x"), headers={"X-Authproxy-Key": f"{S}-wrong-client-key"})
    await call(client, out, "GET", proxy.at("/basic/x"), headers={"Authorization": f"Bearer {S}-wrong-bearer-key"})

    # -- websockets ---------------------------------------------------------------------------------
    async with client.ws_connect(proxy.at(f"/basic/ws?{QUERY}"), headers=CLIENT_HEADERS) as ws:
        await ws.send_str(f"hello {S}-ws-frame")
        assert (await ws.receive()).data == f"echo:hello {S}-ws-frame"
    for name in ("fail_client", "static"):
        try:
            async with client.ws_connect(proxy.at(f"/{name}/ws?{QUERY}"), headers=CLIENT_HEADERS) as ws:
                await ws.close()
        except aiohttp.WSServerHandshakeError as exc:
            assert exc.status == 503  # the body is read below, with the same handshake by hand
    handshake = {"Upgrade": "websocket", "Connection": "Upgrade", "Sec-WebSocket-Version": "13"}
    handshake["Sec-WebSocket-Key"] = "dGhlIHNhbXBsZSBub25jZQ=="
    await call(client, out, "GET", proxy.at(f"/fail_client/ws?{QUERY}"), headers={**CLIENT_HEADERS, **handshake})

    # -- time passes: renewals, rotations, retries after backoff ------------------------------------
    for _ in range(3):
        await fake_clock.advance(3600)
        await settle_credentials()
    for name in routes:
        await call(client, out, "GET", proxy.at(f"/{name}/after-renewal"), headers=CLIENT_HEADERS)

    # -- admin endpoints ------------------------------------------------------------------------------
    for admin in ("/-/health", "/-/ready", "/-/status", "/-/metrics"):
        async with client.get(proxy.at(admin), headers=ADMIN_HEADERS) as resp:
            out.add(admin, await resp.text())
        await call(client, out, "GET", proxy.at(admin), headers={"Authorization": f"Bearer {S}-wrong-admin-key"})
    async with client.get(proxy.at("/-/status"), headers={**ADMIN_HEADERS, "Accept": "text/html"}) as resp:
        out.add("/-/status html", await resp.text())
    login_status = await call(client, out, "GET", proxy.at("/-/login/authcode"), headers=ADMIN_HEADERS)
    assert login_status == 302  # the browser login starts: off to the provider
    callback = f"/-/login/authcode/callback?code={S}-login-code&state=forged"
    cookie = {**ADMIN_HEADERS, "Cookie": f"authproxy_login={S}-login-cookie"}
    assert await call(client, out, "GET", proxy.at(callback), headers=cookie) == 400

    # -- reload: a rotated secret and a new route, then a broken file ----------------------------
    path.write_text(yaml.safe_dump(scenario_config(upstream, token_server, pem, rotated=True)))
    async with client.post(proxy.at("/-/reload"), headers=ADMIN_HEADERS) as resp:
        out.add("reload", await resp.text())
        assert resp.status == 200
    routes.append("added")
    await call(client, out, "GET", proxy.at(f"/added/x?{QUERY}"), headers=CLIENT_HEADERS)
    await call(client, out, "GET", proxy.at("/basic/x"), headers=CLIENT_HEADERS)
    checked_ok = run_check(path)
    assert f"config {path} is valid;" in checked_ok and "upstream:" in checked_ok  # the table and the YAML
    out.add("authproxy check (valid)", checked_ok)
    broken = scenario_config(upstream, token_server, pem, rotated=True)
    broken["routes"]["basic"]["headers"]["x-api-key"] = f"{S}-newline-key\nInjected: 1"
    broken["routes"]["basic"]["auth"]["extra_params"] = {"nested": {"inner": f"{S}-in-a-value"}}
    broken["routes"]["static"]["auth"]["token"] = "${UNSET_SECRET_VAR_X}"
    broken["routes"]["pkjwt"]["auth"]["private_key"] = f"-----BEGIN PRIVATE KEY-----\n{S}-not-a-key\n"
    path.write_text(yaml.safe_dump(broken))
    async with client.post(proxy.at("/-/reload"), headers=ADMIN_HEADERS) as resp:
        out.add("reload (invalid)", await resp.text())
        assert resp.status == 400
    out.add("authproxy check (invalid)", run_check(path))
    async with client.get(proxy.at("/-/status"), headers=ADMIN_HEADERS) as resp:
        out.add("/-/status after reloads", await resp.text())
    async with client.get(proxy.at("/-/metrics"), headers=ADMIN_HEADERS) as resp:
        out.add("/-/metrics after reloads", await resp.text())

    # -- the scenario really happened ---------------------------------------------------------------
    paths = {r.path for r in token_server.requests}
    assert {"/ok", "/fail/client", "/fail/busy", "/fail/request", "/fail/grant", "/fail/html"} <= paths
    assert any(r.params.get("grant_type") == "refresh_token" for r in token_server.requests)
    assert any("client_assertion" in r.params for r in token_server.requests)
    assert len(upstream.seen) > 30 and any(s.raw_path.startswith("/ws") for s in upstream.seen)
    assert any(s.headers.get("Authorization", "").startswith(f"Bearer {S}-issued-at-") for s in upstream.seen)
    assert any('"retried": true' in line for line in logs.text.splitlines())

    def answer(key: str) -> tuple[int, str | None]:
        status, body = out.answers[key]
        error = json.loads(body).get("error") if status >= 400 else None
        return status, error.get("code") if isinstance(error, dict) else None

    assert answer("GET /basic/x") == (200, None)
    assert answer("GET /fail_client/x") == (503, "credential_failed")
    assert answer("GET /fail_busy/x") == (503, "token_unavailable")
    assert answer("GET /fail_form/x") == (503, "token_unavailable")
    assert "busy; you sent" in logs.text and "refresh token revoked" in logs.text  # echoes logged, redacted
    for route in ("fail_busy", "fail_form", "fail_client", "fail_grant", "fail_jwt"):  # the provider's own words
        assert "you sent" not in out.answers[f"GET /{route}/x"][1]  # never reach a client: operators only
    assert answer("GET /fail_jwt/x") == (503, "token_unavailable")
    assert answer("GET /fail_html/x") == (503, "token_unavailable")
    assert answer("GET /fail_grant/x") == (503, "login_required")
    assert answer("GET /dead/x") == (502, "upstream_unreachable")
    assert answer("GET /slow/hang") == (504, "upstream_timeout")
    assert answer("GET /nope/x") == (404, "route_not_found")
    assert answer("GET /basic/auth/x")[0] == 401 and answer("GET /static/auth/x")[0] == 401
    assert answer("GET /-/metrics")[0] == 401  # the last try used a wrong admin key
    assert answer("GET /added/x") == (200, None)

    # -- and nothing was shown ----------------------------------------------------------------------
    await asyncio.sleep(0)  # the log writer flushes once per loop iteration
    assertions = [r.params["client_assertion"] for r in token_server.requests if "client_assertion" in r.params]
    pem_lines = [line for line in pem.splitlines() if len(line) > 40]
    forbidden = [S, "PRIVATE KEY", *pem_lines, *assertions]
    shown = [("log", logs.text), ("stdlib log", caplog.text), *out.items]
    leaks = [(where, word, _around(text, word)) for where, text in shown for word in forbidden if word in text]
    assert leaks == [], "\n".join(f"{w}: {word!r} in ...{ctx}..." for w, word, ctx in leaks)


def _unbase64(text: str) -> str:
    try:
        return base64.b64decode(text, validate=True).decode(errors="replace")
    except ValueError:
        return ""


def _around(text: str, word: str, width: int = 120) -> str:
    at = text.index(word)
    return text[max(0, at - width) : at + len(word) + width]


@pytest.mark.parametrize("scheme", ["http", "ftp"])  # ftp: the "not an http(s) URL" message must not echo it
async def test_passwords_in_upstream_urls_are_refused_without_being_shown(make_proxy, tmp_path: Path, scheme) -> None:
    """`http://user:password@host` is a credential in the wrong place: refused at load, never repeated."""
    config = {"routes": {"api": {"upstream": f"{scheme}://user:{S}-upstream-password@127.0.0.1:9/base"}}}
    with pytest.raises(ConfigError) as err:
        await make_proxy(config)
    assert [p for p, _ in err.value.problems] == ["routes.api.upstream"]
    assert S not in err.value.render()
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    shown = run_check(path)
    assert "routes.api.upstream" in shown and S not in shown


async def test_token_url_with_a_password_is_refused_or_a_json_503(
    make_proxy, upstream: FakeUpstream, client, logs: LogCapture, tmp_path: Path
) -> None:
    config = {
        "routes": {
            "tok": {
                "upstream": upstream.url,
                "auth": {
                    "grant": "client_credentials",
                    "token_url": f"http://user:{S}-token-url-password@127.0.0.1:9/token",
                    "client_id": "cid",
                    "client_secret": f"{S}-secret",
                },
            }
        }
    }
    try:
        proxy = await make_proxy(config)
    except ConfigError as err:  # refusing credentials in a token URL at load time is fine too
        assert S not in err.render()
        return
    async with client.get(proxy.at("/tok/x")) as resp:
        body = await resp.text()
        assert resp.status == 503 and resp.content_type == "application/json", body
    assert S not in body and S not in logs.text
