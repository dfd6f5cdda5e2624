"""`authproxy exec`, run as a real subprocess: the command reaches the proxy with no auth of its own."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

from authproxy.cli.exec import exit_code, proxy_env, route_var
from authproxy.config.load import parse_config
from tests.fakes.token_server import TokenServer
from tests.fakes.upstream import FakeUpstream

ROOT = Path(__file__).resolve().parents[2]
CLI = [sys.executable, "-m", "authproxy"]

# What the command runs: fetch $AUTHPROXY_URL_API/things, print the body, exit with a chosen code.
FETCH = (
    "import os, sys, urllib.request; "
    "body = urllib.request.urlopen(os.environ['AUTHPROXY_URL_API'] + '/things?q=1', timeout=10).read(); "
    "print(body.decode()); sys.exit(int(sys.argv[1]))"
)


def env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT)}


async def run_exec(*args: str, cwd: Path) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        *CLI, "exec", *args, cwd=cwd, env=env(), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


def write_config(tmp_path: Path, upstream: FakeUpstream, server: TokenServer) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(
        "log: {format: json}\n"
        "routes:\n"
        f"  api:\n    upstream: {upstream.url}/base\n"
        f"    auth: {{grant: client_credentials, token_url: {server.url}, client_id: cid, client_secret: cs}}\n"
        f"  o-token:\n    upstream: {upstream.url}\n    prefix: /o\n"
    )
    return path


async def test_command_gets_urls_and_tokens_are_injected(tmp_path, upstream: FakeUpstream, server) -> None:
    config = write_config(tmp_path, upstream, server)
    code, out, err = await run_exec("-c", str(config), "--", sys.executable, "-c", FETCH, "3", cwd=tmp_path)
    assert code == 3, err  # the command's exit code, not the proxy's
    seen = upstream.last
    assert seen.raw_path == "/base/things?q=1"
    assert seen.headers["Authorization"] == "Bearer at-1"
    assert len(server.requests) == 1
    assert '"exec"' in err  # the proxy's log goes to stderr; stdout is the command's alone
    assert out.strip() == ""  # the echo upstream answers a GET with its (empty) body


async def test_default_config_and_environment_like_the_newman_recipe(tmp_path, upstream, server) -> None:
    write_config(tmp_path, upstream, server)  # ./config.yaml, found without -c
    script = 'echo "$AUTHPROXY_URL|$AUTHPROXY_URL_API|$AUTHPROXY_URL_O_TOKEN"'
    code, out, err = await run_exec("--", "sh", "-c", script, cwd=tmp_path)
    assert code == 0, err
    base, api, o_token = out.strip().split("|")
    assert base.startswith("http://127.0.0.1:") and not base.endswith(":8080")
    assert (api, o_token) == (base + "/api", base + "/o")


async def test_exit_codes_like_a_shell(tmp_path, upstream, server) -> None:
    config = str(write_config(tmp_path, upstream, server))
    assert (await run_exec("-c", config, "--", "sh", "-c", "exit 0", cwd=tmp_path))[0] == 0
    assert (await run_exec("-c", config, "--", "sh", "-c", "kill -TERM $$", cwd=tmp_path))[0] == 128 + 15
    code, _, err = await run_exec("-c", config, "--", "no-such-command-authproxy", cwd=tmp_path)
    assert code == 127 and "command not found" in err
    code, _, err = await run_exec("-c", config, cwd=tmp_path)
    assert code == 2 and "usage" in err
    code, _, err = await run_exec("-c", str(tmp_path / "absent.yaml"), "--", "true", cwd=tmp_path)
    assert code == 2 and "no config file at" in err


async def test_sigterm_is_forwarded_and_its_exit_code_returned(tmp_path, upstream, server) -> None:
    config = write_config(tmp_path, upstream, server)
    child = (
        "import signal, sys; signal.signal(signal.SIGTERM, lambda *a: sys.exit(7)); "
        "print('ready', flush=True); signal.pause()"
    )
    proc = await asyncio.create_subprocess_exec(
        *CLI,
        "exec",
        "-c",
        str(config),
        "--",
        sys.executable,
        "-c",
        child,
        cwd=tmp_path,
        env=env(),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert proc.stdout is not None
    assert await asyncio.wait_for(proc.stdout.readline(), 30) == b"ready\n"
    proc.send_signal(signal.SIGTERM)
    _, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 7, err.decode()


def test_variable_names_and_exit_code_mapping() -> None:
    assert route_var("stockx") == "AUTHPROXY_URL_STOCKX"
    assert route_var("o-token.v2") == "AUTHPROXY_URL_O_TOKEN_V2"
    config = parse_config(
        "routes:\n  root: {upstream: 'http://a.example', prefix: /}\n  b: {upstream: 'http://b.example'}\n"
    )
    assert proxy_env(config, "http://127.0.0.1:5") == {
        "AUTHPROXY_URL": "http://127.0.0.1:5",
        "AUTHPROXY_URL_ROOT": "http://127.0.0.1:5",
        "AUTHPROXY_URL_B": "http://127.0.0.1:5/b",
    }
    assert (exit_code(0), exit_code(5), exit_code(-signal.SIGKILL)) == (0, 5, 137)
