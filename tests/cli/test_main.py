"""The command line, run as a real subprocess: check, presets, run with graceful drain."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from pathlib import Path

import aiohttp
import pytest

from tests.fakes.token_server import Reply

CLI = [sys.executable, "-m", "authproxy"]


async def run_cli(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        *CLI, *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    return proc.returncode or 0, out.decode(), err.decode()


def write(tmp_path: Path, text: str) -> str:
    path = tmp_path / "config.yaml"
    path.write_text(text)
    return str(path)


async def test_check_prints_routes_with_secrets_masked(tmp_path) -> None:
    config = write(
        tmp_path,
        "routes:\n  pay:\n    upstream: https://pay.example/api\n"
        "    headers: {x-api-key: SENTINEL-KEY}\n"
        "    auth: {grant: client_credentials, token_url: /o/token/, client_id: my-id,\n"
        "           client_secret: SENTINEL-SECRET}\n",
    )
    code, out, err = await run_cli("check", "-c", config, "--show-config")
    assert code == 0, err
    assert "SENTINEL" not in out + err
    assert "my-id" in out and "https://pay.example/o/token/" in out and "********" in out
    assert "pay    /pay    https://pay.example/api  client_credentials  ready\n" in out
    assert f"config {config} is valid; 1 of 1 route(s) ready." in out


async def test_invalid_config_exits_2_listing_every_problem(tmp_path) -> None:
    config = write(tmp_path, "listen: nowhere\nroutes:\n  a: {upstrem: x}\n")
    code, _, err = await run_cli("check", "-c", config)
    assert code == 2
    assert "3 problem(s)" in err
    assert "listen:" in err and "routes.a.upstrem" in err and "did you mean 'upstream'?" in err
    assert "Traceback" not in err
    code, _, err = await run_cli("run", "-c", config)
    assert code == 2 and "3 problem(s)" in err


@pytest.mark.parametrize(
    ("extra", "key"),
    [
        ("store: {kind: redis}\n", "store.kind"),  # no url: `run` would fail
        ("store: {kind: file, path: PATH, encryption_key: not-a-fernet-key}\n", "store.encryption_key"),
        ("", "routes.api.tls"),  # a client certificate that cannot be loaded
    ],
    ids=["redis-without-url", "bad-encryption-key", "unloadable-tls-files"],
)
async def test_check_builds_what_run_builds(tmp_path, extra, key) -> None:
    """`check` builds the store, the routes' TLS and credentials as `run` does: what `run` refuses, `check` refuses."""
    bad = tmp_path / "bad.pem"
    bad.write_text("not a certificate")
    tls = f"    tls: {{cert_file: {bad}, key_file: {bad}}}\n" if not extra else ""
    text = (
        extra.replace("PATH", str(tmp_path / "tokens.json"))
        + f"routes:\n  api:\n    upstream: https://x.example\n{tls}"
    )
    config = write(tmp_path, text)
    for args in (("check", "-c", config), ("run", "-c", config, "--listen", "127.0.0.1:0")):
        code, out, err = await run_cli(*args)
        assert code == 2, (args, out, err)
        assert key in err, (args, err)


async def test_missing_config_file_exits_2(tmp_path) -> None:
    code, _, err = await run_cli("check", "-c", str(tmp_path / "absent.yaml"))
    assert code == 2 and f"no config file at {tmp_path / 'absent.yaml'}" in err


async def test_presets_lists_all_providers() -> None:
    code, out, _ = await run_cli("presets")
    assert code == 0
    for name in ("stockx", "stex", "stonex", "tradevest", "o-token"):
        assert name in out
    code, out, _ = await run_cli("presets", "stockx")
    assert code == 0 and "gateway.stockx.com" in out and "x-api-key" in out
    code, out, _ = await run_cli("presets", "stex")
    assert code == 0 and "scope: trade profile reports\n" in out
    assert "# sensitive scopes, each for a route of its own (not asked for by default): withdrawal" in out
    code, out, _ = await run_cli("presets", "o-token")
    assert code == 0 and "scope: read write\n" in out and "own (not asked for by default): admin" in out


@pytest.mark.parametrize(
    ("route", "scope", "warned"),
    [
        ("stex", "trade withdrawal", True),
        ("stex", "withdrawal", False),  # alone on its route: what the README shows
        ("stex", None, False),  # the preset's everyday scopes
        ("ot", "read write admin", True),
        ("ot", "admin", False),
    ],
)
async def test_check_warns_about_a_sensitive_scope_sharing_a_route(tmp_path, route, scope, warned) -> None:
    preset = "stex" if route == "stex" else "o-token"
    auth = "{client_id: id, client_secret: s" + (f", scope: {scope}" if scope else "") + "}"
    text = f"routes:\n  {route}:\n    preset: {preset}\n    upstream: https://x.example\n    auth: {auth}\n"
    code, _, err = await run_cli("check", "-c", write(tmp_path, text))
    assert code == 0, err
    sensitive = "withdrawal" if preset == "stex" else "admin"
    line = f"warning: routes.{route}.auth.scope asks for {sensitive} together with"
    assert (line in err) is warned, err
    if warned:
        assert f"give {sensitive} a route of its own" in err


async def start_proxy(config: str) -> tuple[asyncio.subprocess.Process, str, list[dict]]:
    proc = await asyncio.create_subprocess_exec(
        *CLI, "run", "-c", config, "--listen", "127.0.0.1:0", "--log-format", "json", stderr=asyncio.subprocess.PIPE
    )
    assert proc.stderr is not None
    lines: list[dict] = []
    while True:
        line = await asyncio.wait_for(proc.stderr.readline(), 30)
        assert line, "the proxy exited before listening"
        lines.append(json.loads(line))
        if lines[-1]["event"] == "listening":
            return proc, lines[-1]["url"], lines


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
async def test_run_serves_and_drains_in_flight_on_signal(tmp_path, upstream, sig) -> None:
    config = write(tmp_path, f"shutdown_timeout: 20\nroutes:\n  api:\n    upstream: {upstream.url}\n")
    proc, url, lines = await start_proxy(config)
    assert lines[-1]["routes"] == {"/api": upstream.url}
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{url}/api/plain") as resp:
            assert resp.status == 200
        async with session.get(f"{url}/api/chunks/2") as resp:  # in flight while the signal arrives
            upstream.chunk_gate.put_nowait(None)
            assert await resp.content.readuntil(b"\n\n") == b"data: 0\n\n"
            proc.send_signal(sig)
            assert proc.stderr is not None
            while json.loads(await asyncio.wait_for(proc.stderr.readline(), 10))["event"] != "shutting_down":
                pass
            upstream.chunk_gate.put_nowait(None)
            assert await resp.read() == b"data: 1\n\n"
    assert await asyncio.wait_for(proc.wait(), 30) == 0


async def test_drain_gives_up_after_shutdown_timeout(tmp_path, upstream) -> None:
    config = write(tmp_path, f"shutdown_timeout: 0.5\nroutes:\n  api:\n    upstream: {upstream.url}\n")
    proc, url, _ = await start_proxy(config)
    async with aiohttp.ClientSession() as session:
        pending = asyncio.ensure_future(session.get(f"{url}/api/hang"))
        await upstream.hang_started.wait()
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 30) == 0
        with pytest.raises(aiohttp.ClientError):
            await pending


async def test_token_prints_a_current_access_token_only(tmp_path, token_server) -> None:
    token_server.default = lambda request: Reply.token("at-cli", 3600, refresh_token="SENTINEL-RT")
    config = write(
        tmp_path,
        "routes:\n  api:\n    upstream: https://api.example.com\n    auth:\n      grant: client_credentials\n"
        f"      token_url: {token_server.url}\n      client_id: cid\n      client_secret: SENTINEL-SECRET\n",
    )
    code, out, err = await run_cli("token", "api", "-c", config)
    assert (code, out) == (0, "at-cli\n"), err
    code, out, _ = await run_cli("token", "api", "--json", "-c", config)
    shown = json.loads(out)
    assert code == 0 and shown["access_token"] == "at-cli" and shown["token_type"] == "Bearer"
    assert shown["expires_at"] > 0
    assert "SENTINEL" not in out + err


async def test_token_reports_failures_clearly(tmp_path, token_server) -> None:
    token_server.default = lambda request: Reply.error("invalid_client", status=401)
    config = write(
        tmp_path,
        "routes:\n  api:\n    upstream: https://api.example.com\n    auth:\n      grant: client_credentials\n"
        f"      token_url: {token_server.url}\n      client_id: cid\n      client_secret: SENTINEL-SECRET\n"
        "  open:\n    upstream: https://api.example.com\n",
    )
    code, out, err = await run_cli("token", "api", "-c", config)
    assert code == 1 and out == ""
    assert err == (
        "api: token endpoint answered HTTP 401: invalid_client; check routes.api.auth.client_id and client_secret\n"
    )
    code, _, err = await run_cli("token", "nope", "-c", config)
    assert code == 1 and "routes: api, open" in err
    code, _, err = await run_cli("token", "open", "-c", config)
    assert code == 1 and "no token" in err


async def test_sighup_reloads_the_config(tmp_path, upstream) -> None:
    config = write(tmp_path, f"routes:\n  api:\n    upstream: {upstream.url}\n")
    proc, url, _ = await start_proxy(config)
    try:
        async with aiohttp.ClientSession() as session:
            async with session.get(f"{url}/later/x") as resp:
                assert resp.status == 404
            write(tmp_path, f"routes:\n  api:\n    upstream: {upstream.url}\n  later:\n    upstream: {upstream.url}\n")
            proc.send_signal(signal.SIGHUP)
            assert proc.stderr is not None
            while json.loads(await asyncio.wait_for(proc.stderr.readline(), 10))["event"] != "reloaded":
                pass
            async with session.get(f"{url}/later/x") as resp:
                assert resp.status == 200
    finally:
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 30) == 0
