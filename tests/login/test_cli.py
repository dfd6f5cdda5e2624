"""`authproxy login` / `logout`: the browser flow against a strict fake authorization server.

The browser is an HTTP client following redirects by hand; the callback server, the token
exchange and the file store are the real ones. After a login, proxies are started from the same
token file (a restart is a new app and a new store object) and must serve from it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import io
import json
import os
import socket
import stat
import sys
from pathlib import Path

import pytest
import yaml

from authproxy.cli.main import main
from authproxy.clock import Clock, SystemClock
from authproxy.config.schema import Config
from authproxy.credentials.identity import store_key
from authproxy.credentials.tokens import Token
from authproxy.login.cli import run_login, run_logout
from authproxy.server.runtime import RUNTIME
from authproxy.stores.file import FileStore
from tests.conftest import wait_until
from tests.fakes import settle
from tests.fakes.auth_server import AuthServer, FakeBrowser, browse, free_port, login_raw, parse


@pytest.fixture
async def auth_server():
    port = free_port()
    async with AuthServer(redirect_uris=[f"http://127.0.0.1:{port}/callback"]) as server:
        server.port = port  # type: ignore[attr-defined]
        yield server


def raw_for(server: AuthServer, upstream: str, tmp_path: Path, **auth: object) -> dict:
    redirect = f"http://127.0.0.1:{server.port}/callback"  # type: ignore[attr-defined]
    return login_raw(server, upstream, redirect, {"kind": "file", "path": str(tmp_path / "tokens.json")}, **auth)


def config_for(server: AuthServer, upstream: str, tmp_path: Path, **auth: object) -> Config:
    return parse(raw_for(server, upstream, tmp_path, **auth))


def file_store(config: Config) -> FileStore:
    return FileStore(config.store.path or "")


async def login_in_browser(config: Config, client, clock: Clock, **kwargs: object) -> tuple[int, str, str]:
    """Run the login with a fake browser that follows every redirect; (exit code, page, output)."""
    browser, out = FakeBrowser(), io.StringIO()
    task = asyncio.ensure_future(
        run_login(config.routes["api"], file_store(config), open_browser=browser, clock=clock, out=out, **kwargs)
    )
    url = await asyncio.wait_for(browser.urls.get(), 5)
    _, page, _ = await browse(client, url)
    return await task, page, out.getvalue()


@pytest.mark.parametrize(
    ("client_auth", "extra"),
    [("client_secret_post", {"audience": "gateway.example.com"}), ("client_secret_basic", {}), ("none", {})],
)
async def test_login_then_restarted_proxy_serves_from_the_stored_refresh_token(
    auth_server, upstream, make_proxy, client, fake_clock, tmp_path, client_auth, extra
) -> None:
    auth_server.client_auth = client_auth
    auth_server.expires_in = 600
    raw = raw_for(auth_server, upstream.url, tmp_path, authorize_params={"prompt": "login"}, **extra)
    config = parse(raw)
    rc, page, out = await login_in_browser(config, client, fake_clock)
    assert rc == 0, out
    assert "Logged in" in page and "Logged in: route api" in out
    assert auth_server.problems == []
    (authorize,) = auth_server.authorize_requests
    assert authorize["scope"] == "offline_access openid" and authorize["prompt"] == "login"
    assert authorize.get("audience") == extra.get("audience")
    (exchange,) = auth_server.token_requests
    assert exchange.params["grant_type"] == "authorization_code"
    assert exchange.params["redirect_uri"] == authorize["redirect_uri"]
    stored = await file_store(config).load(store_key("api"))
    assert (stored.access_token, stored.refresh_token) == ("at-1", "rt-1")

    first = await make_proxy(raw, clock=fake_clock, store=file_store(config))
    async with client.get(first.at("/api/x")) as resp:
        assert resp.status == 200
    assert upstream.last.headers["Authorization"] == "Bearer at-1"
    assert len(auth_server.token_requests) == 1  # served from the stored login, no token request
    await first.runner.cleanup()

    await fake_clock.advance(601)  # the stored access token has expired meanwhile
    second = await make_proxy(raw, clock=fake_clock, store=file_store(config))
    async with client.get(second.at("/api/y")) as resp:
        assert resp.status == 200
    assert upstream.last.headers["Authorization"] == "Bearer at-2"
    assert auth_server.token_requests[-1].params["refresh_token"] == "rt-1"
    assert (await file_store(config).load(store_key("api"))).refresh_token == "rt-2"  # rotation persisted
    assert auth_server.problems == []


async def test_running_proxy_picks_up_a_cli_login_without_restart(
    auth_server, upstream, make_proxy, client, fake_clock, tmp_path
) -> None:
    raw = raw_for(auth_server, upstream.url, tmp_path)
    config = parse(raw)
    proxy = await make_proxy(raw, clock=fake_clock, store=file_store(config))
    async with client.get(proxy.at("/api/x")) as resp:
        assert resp.status == 503
        assert (await resp.json())["error"]["code"] == "login_required"
        assert "authproxy login api" in (await resp.json())["error"]["message"]
    rc, _, out = await login_in_browser(config, client, fake_clock)
    assert rc == 0, out
    await fake_clock.advance(2)  # the parked credential re-reads the store at most once a second
    async with client.get(proxy.at("/api/x")) as resp:
        assert resp.status == 200
    assert upstream.last.headers["Authorization"] == "Bearer at-1"


async def test_access_denied_exits_1_and_saves_nothing(auth_server, client, fake_clock, tmp_path) -> None:
    auth_server.decision = "deny"
    config = config_for(auth_server, "http://127.0.0.1:9", tmp_path)
    rc, page, out = await login_in_browser(config, client, fake_clock)
    assert rc == 1
    assert "access_denied" in out and "The user said no" in out and "authproxy login api" in out
    assert "Login failed" in page
    assert auth_server.token_requests == []
    assert not Path(config.store.path or "").exists()


async def test_state_mismatch_exits_1_without_exchanging(auth_server, client, fake_clock, tmp_path) -> None:
    config = config_for(auth_server, "http://127.0.0.1:9", tmp_path)
    browser, out = FakeBrowser(), io.StringIO()
    task = asyncio.ensure_future(
        run_login(config.routes["api"], file_store(config), open_browser=browser, clock=fake_clock, out=out)
    )
    url = await browser.urls.get()
    _, _, callback = await browse(client, url, stop_at=f"http://127.0.0.1:{auth_server.port}/")
    forged = callback.replace("state=", "state=forged")
    status, _, _ = await browse(client, forged)
    assert status == 400
    assert await task == 1
    assert "state does not match" in out.getvalue()
    assert auth_server.token_requests == []


async def test_port_in_use_exits_1_with_what_to_do(auth_server, fake_clock, tmp_path) -> None:
    config = config_for(auth_server, "http://127.0.0.1:9", tmp_path)
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", auth_server.port))
        busy.listen()
        out = io.StringIO()
        rc = await run_login(config.routes["api"], file_store(config), open_browser=FakeBrowser(), out=out)
    assert rc == 1
    text = out.getvalue()
    assert f"port {auth_server.port}" in text and "already in use" in text and "--no-browser" in text


async def test_token_endpoint_error_exits_1_without_leaking(auth_server, client, fake_clock, tmp_path) -> None:
    config = config_for(auth_server, "http://127.0.0.1:9", tmp_path, client_secret="SENTINEL-wrong-secret")
    rc, page, out = await login_in_browser(config, client, fake_clock)
    assert rc == 1
    assert "invalid_client" in out and "check client_id and client_secret" in out
    assert "Login failed" in page
    for secret in [*auth_server.secrets_seen, "SENTINEL-wrong-secret"]:
        assert secret not in out and secret not in page


async def test_timeout_exits_1(auth_server, fake_clock, tmp_path) -> None:
    config = config_for(auth_server, "http://127.0.0.1:9", tmp_path)
    out = io.StringIO()
    task = asyncio.ensure_future(
        run_login(config.routes["api"], file_store(config), open_browser=FakeBrowser(), clock=fake_clock, out=out)
    )
    await wait_until(lambda: fake_clock.sleepers == 1)
    await fake_clock.advance(299)
    assert not task.done()
    await fake_clock.advance(2)
    assert await task == 1
    assert "no login completed within 300s" in out.getvalue() and "--timeout" in out.getvalue()


async def test_no_browser_accepts_the_pasted_redirect(auth_server, client, fake_clock, tmp_path) -> None:
    config = config_for(auth_server, "http://127.0.0.1:9", tmp_path)
    out = io.StringIO()
    pasted: asyncio.Queue[str | None] = asyncio.Queue()
    task = asyncio.ensure_future(
        run_login(config.routes["api"], file_store(config), read_line=pasted.get, clock=fake_clock, out=out)
    )
    await wait_until(lambda: "Open this URL" in out.getvalue())
    url = out.getvalue().split("Open this URL in a browser and log in:\n\n  ", 1)[1].split("\n", 1)[0]
    # the browser on another machine cannot reach the callback: the user copies the address bar
    _, _, redirect = await browse(client, url, stop_at=f"http://127.0.0.1:{auth_server.port}/")
    pasted.put_nowait("\n")
    pasted.put_nowait("https://example.com/not-it\n")
    pasted.put_nowait(redirect + "\n")
    assert await task == 0, out.getvalue()
    assert "not the redirect address" in out.getvalue()
    assert (await file_store(config).load(store_key("api"))).refresh_token == "rt-1"
    assert auth_server.problems == []


async def test_no_browser_pastes_even_when_the_port_is_taken(auth_server, client, fake_clock, tmp_path) -> None:
    config = config_for(auth_server, "http://127.0.0.1:9", tmp_path)
    out = io.StringIO()
    pasted: asyncio.Queue[str | None] = asyncio.Queue()
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", auth_server.port))
        busy.listen()
        task = asyncio.ensure_future(
            run_login(config.routes["api"], file_store(config), read_line=pasted.get, clock=fake_clock, out=out)
        )
        await wait_until(lambda: "Waiting" in out.getvalue())
        assert "already in use" in out.getvalue() and "paste" in out.getvalue()
        (url,) = [line.strip() for line in out.getvalue().splitlines() if line.strip().startswith("http")]
        _, _, redirect = await browse(client, url, stop_at=f"http://127.0.0.1:{auth_server.port}/")
        pasted.put_nowait(redirect)
        assert await task == 0, out.getvalue()
        pasted_eof = asyncio.Queue()
        pasted_eof.put_nowait(None)
        rc = await run_login(config.routes["api"], file_store(config), read_line=pasted_eof.get, out=out)
    assert rc == 1 and "input ended" in out.getvalue()


async def test_logout_revokes_then_deletes(auth_server, fake_clock, tmp_path) -> None:
    config = config_for(auth_server, "http://127.0.0.1:9", tmp_path, revocation_url=auth_server.revocation_url)
    store = file_store(config)
    auth_server.refresh_tokens["rt-live"] = True
    await store.save(store_key("api"), Token("at-live", None, refresh_token="rt-live"))
    out = io.StringIO()
    assert await run_logout(config.routes["api"], store, clock=fake_clock, out=out) == 0
    (revocation,) = auth_server.revocations
    assert revocation.params["token"] == "rt-live" and revocation.params["token_type_hint"] == "refresh_token"
    assert auth_server.problems == [] and auth_server.refresh_tokens["rt-live"] is False
    assert await store.load(store_key("api")) is None
    assert "Revoked the refresh token" in out.getvalue() and "rt-live" not in out.getvalue()
    assert await run_logout(config.routes["api"], store, clock=fake_clock, out=out) == 0
    assert "not logged in" in out.getvalue()


async def test_logout_reports_a_failed_revocation_after_deleting(auth_server, fake_clock, tmp_path) -> None:
    config = config_for(auth_server, "http://127.0.0.1:9", tmp_path, revocation_url=auth_server.revocation_url)
    store = file_store(config)
    auth_server.revoke_status = 503
    await store.save(store_key("api"), Token("at-live", None, refresh_token="rt-live"))
    out = io.StringIO()
    assert await run_logout(config.routes["api"], store, clock=fake_clock, out=out) == 1
    assert "local tokens are deleted" in out.getvalue() and "HTTP 503" in out.getvalue()
    assert await store.load(store_key("api")) is None


async def test_logout_without_revocation_url_says_so(auth_server, tmp_path) -> None:
    config = config_for(auth_server, "http://127.0.0.1:9", tmp_path)
    store = file_store(config)
    await store.save(store_key("api"), Token("at-live", None, refresh_token="rt-live"))
    out = io.StringIO()
    assert await run_logout(config.routes["api"], store, out=out) == 0
    assert "No auth.revocation_url" in out.getvalue()
    assert auth_server.revocations == []


def _write_config(tmp_path: Path, text: str) -> str:
    path = tmp_path / "config.yaml"
    path.write_text(text)
    return str(path)


async def test_a_localhost_redirect_uri_is_served(client, fake_clock, tmp_path) -> None:
    """The presets register http://localhost:8765/callback; the browser may resolve it to 127.0.0.1 or ::1."""
    port = free_port()
    redirect = f"http://localhost:{port}/callback"
    async with AuthServer(redirect_uris=[redirect]) as server:
        config = parse(login_raw(server, "http://127.0.0.1:9", redirect, {"kind": "file", "path": str(tmp_path / "t")}))
        rc, page, out = await login_in_browser(config, client, fake_clock)
    assert rc == 0, out
    assert "Logged in" in page and server.problems == []


def test_cli_login_with_a_corrupt_token_file_exits_2_and_keeps_it(tmp_path, capsys) -> None:
    tokens = tmp_path / "tokens.json"
    tokens.write_text("{garbage")
    config = _write_config(
        tmp_path,
        f"store: {{path: '{tokens}'}}\nroutes:\n  api:\n    upstream: http://127.0.0.1:9\n    auth:\n"
        "      grant: authorization_code\n      token_url: /t\n      authorize_url: /a\n"
        "      client_id: c\n      client_secret: s\n      redirect_uri: http://127.0.0.1:1/cb\n",
    )
    assert main(["login", "api", "-c", config]) == 2
    err = capsys.readouterr().err
    assert "store.path" in err and "left untouched" in err
    assert tokens.read_text() == "{garbage"


def test_cli_login_refuses_a_memory_store_and_other_grants(tmp_path, capsys) -> None:
    memory = _write_config(
        tmp_path,
        "store: {kind: memory}\nroutes:\n  api:\n    upstream: http://127.0.0.1:9\n    auth:\n"
        "      grant: authorization_code\n      token_url: /t\n      authorize_url: /a\n"
        "      client_id: c\n      client_secret: s\n      redirect_uri: http://127.0.0.1:1/cb\n",
    )
    assert main(["login", "api", "-c", memory]) == 1
    assert "store.kind is memory" in capsys.readouterr().err
    other = _write_config(tmp_path, "routes:\n  api:\n    upstream: http://127.0.0.1:9\n")
    assert main(["login", "api", "-c", other]) == 1
    assert "only authorization_code routes" in capsys.readouterr().err
    assert main(["login", "nope", "-c", other]) == 1
    assert "no route 'nope'" in capsys.readouterr().err


async def test_cli_login_no_browser_in_a_real_process_then_logout(auth_server, client, tmp_path, monkeypatch) -> None:
    """`authproxy login --no-browser` as a user runs it: URL on stderr, redirect pasted on stdin."""
    raw = raw_for(auth_server, "http://127.0.0.1:9", tmp_path, revocation_url=auth_server.revocation_url)
    del raw["store"]  # the default: a file under $XDG_STATE_HOME, as a login route needs one
    config_file = tmp_path / "config.yaml"
    config_file.write_text(yaml.safe_dump(raw))
    env = {**os.environ, "XDG_STATE_HOME": str(tmp_path / "state")}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "authproxy", "login", "api", "-c", str(config_file), "--no-browser", "--timeout", "30",
        stdin=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env,
    )  # fmt: skip
    assert proc.stdin is not None and proc.stderr is not None
    try:
        async with asyncio.timeout(20):
            url = ""
            while not url.startswith("http"):
                url = (await proc.stderr.readline()).decode().strip()
            _, _, redirect = await browse(client, url, stop_at=f"http://127.0.0.1:{auth_server.port}/")
            proc.stdin.write(redirect.encode() + b"\n")
            await proc.stdin.drain()
            rest = (await proc.stderr.read()).decode()
            assert await proc.wait() == 0, rest
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    token_file = tmp_path / "state" / "authproxy" / "tokens.json"
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    assert stat.S_IMODE(token_file.parent.stat().st_mode) == 0o700
    assert "Logged in: route api" in rest and str(token_file) in rest
    for secret in auth_server.secrets_seen:
        assert secret not in rest
    assert (await FileStore(token_file).load(store_key("api"))).refresh_token == "rt-1"

    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    assert await asyncio.to_thread(main, ["logout", "api", "-c", str(config_file)]) == 0
    assert [r.params["token"] for r in auth_server.revocations] == ["rt-1"]
    assert await FileStore(token_file).load(store_key("api")) is None


async def test_a_restart_during_a_refresh_keeps_the_rotated_refresh_token(
    auth_server, upstream, make_proxy, client, fake_clock, tmp_path
) -> None:
    auth_server.expires_in = 600
    raw = raw_for(auth_server, upstream.url, tmp_path)
    config = parse(raw)
    assert (await login_in_browser(config, client, fake_clock))[0] == 0
    first = await make_proxy(raw, clock=fake_clock, store=file_store(config))
    auth_server.gate = asyncio.Event()
    await fake_clock.advance(590)  # the refresher renews; the server rotates rt-1 and holds its answer
    await wait_until(lambda: len(auth_server.token_requests) == 2)
    stopping = asyncio.ensure_future(first.runner.cleanup())  # SIGTERM right now
    await settle()
    auth_server.gate.set()
    await stopping
    second = await make_proxy(raw, clock=fake_clock, store=file_store(config))
    async with client.get(second.at("/api/x")) as resp:
        assert resp.status == 200, await resp.text()
    assert (await file_store(config).load(store_key("api"))).refresh_token == "rt-2"


async def test_a_parked_proxy_turns_valid_after_a_cli_login_without_any_request(
    auth_server, upstream, make_proxy, client, fake_clock, tmp_path
) -> None:
    """A sidecar behind a readiness probe gets no traffic until it is ready: it must notice the login itself."""
    raw = raw_for(auth_server, upstream.url, tmp_path)
    config = parse(raw)
    proxy = await make_proxy(raw, clock=fake_clock, store=file_store(config))
    credential = proxy.app[RUNTIME].router.by_name["api"].credential
    await wait_until(lambda: credential.status()["state"] == "login_required")
    assert (await login_in_browser(config, client, fake_clock))[0] == 0
    await fake_clock.advance(10)
    assert credential.status()["state"] == "valid"


async def _run_proxy_process(config_file: Path, env: dict[str, str]) -> tuple[asyncio.subprocess.Process, str]:
    """`authproxy run` as a real process on a free port; returns it and its URL (from the `listening` log line)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "authproxy", "run", "-c", str(config_file), "--listen", "127.0.0.1:0",
        "--log-format", "json", stderr=asyncio.subprocess.PIPE, env=env,
    )  # fmt: skip
    assert proc.stderr is not None
    async with asyncio.timeout(20):
        while line := await proc.stderr.readline():
            event = json.loads(line) if line.startswith(b"{") else {}
            if event.get("event") == "listening":
                return proc, event["url"]
    raise AssertionError(f"authproxy run did not start (exit code {await proc.wait()})")


async def _stop(proc: asyncio.subprocess.Process) -> None:
    if proc.returncode is None:
        proc.terminate()
        assert await asyncio.wait_for(proc.wait(), 20) == 0


async def test_login_then_a_real_proxy_process_restarts_on_the_stored_refresh_token(
    auth_server, upstream, client, tmp_path
) -> None:
    raw = raw_for(auth_server, upstream.url, tmp_path)
    del raw["store"]  # the default for a login route: a file under $XDG_STATE_HOME
    config_file = tmp_path / "config.yaml"
    config_file.write_text(yaml.safe_dump(raw))
    env = {**os.environ, "XDG_STATE_HOME": str(tmp_path / "state")}
    token_file = FileStore(tmp_path / "state" / "authproxy" / "tokens.json")
    config = parse({**raw, "store": {"kind": "file", "path": str(token_file.path)}})
    assert (await login_in_browser(config, client, SystemClock()))[0] == 0  # real processes keep real time

    proc, url = await _run_proxy_process(config_file, env)
    try:
        async with client.get(url + "/api/x") as resp:
            assert resp.status == 200, await resp.text()
        assert upstream.last.headers["Authorization"] == "Bearer at-1"
    finally:
        await _stop(proc)
    stored = await token_file.load(store_key("api"))
    assert stored is not None
    await token_file.save(store_key("api"), dataclasses.replace(stored, expires_at=1.0))  # time passes...

    proc, url = await _run_proxy_process(config_file, env)
    try:
        async with client.get(url + "/api/y") as resp:
            assert resp.status == 200, await resp.text()
        assert upstream.last.headers["Authorization"] == "Bearer at-2"
    finally:
        await _stop(proc)
    assert auth_server.token_requests[-1].params["refresh_token"] == "rt-1"
    assert (await token_file.load(store_key("api"))).refresh_token == "rt-2"


async def test_token_command_prints_the_logged_in_access_token_only(
    auth_server, client, tmp_path, monkeypatch, capsys
) -> None:
    raw = raw_for(auth_server, "http://127.0.0.1:9", tmp_path)
    del raw["store"]
    config_file = tmp_path / "config.yaml"
    config_file.write_text(yaml.safe_dump(raw))
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    path = str(tmp_path / "state" / "authproxy" / "tokens.json")
    config = parse({**raw, "store": {"kind": "file", "path": path}})
    assert (await login_in_browser(config, client, SystemClock()))[0] == 0
    capsys.readouterr()
    assert await asyncio.to_thread(main, ["token", "api", "-c", str(config_file)]) == 0
    assert capsys.readouterr().out == "at-1\n"  # the stored login; the refresh token is never printed
    assert len(auth_server.token_requests) == 1
