"""Run the CLI the way a user does: a real `python -m authproxy` process, cwd = a scratch directory."""

from __future__ import annotations

import asyncio
import os
import socket
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CLI = [sys.executable, "-m", "authproxy"]
WAIT = 60.0  # seconds; only guards a hung process (every command here answers in about a second)


def env(**extra: str) -> dict[str, str]:
    """The environment with this checkout first on the path (cwd is not the checkout)."""
    return {**os.environ, "PYTHONPATH": str(ROOT), **extra}


async def cli(
    *args: str, cwd: Path, stdin: int | None = asyncio.subprocess.DEVNULL, **extra: str
) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        *CLI,
        *args,
        cwd=cwd,
        stdin=stdin,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env(**extra),
    )
    out, err = await asyncio.wait_for(proc.communicate(), WAIT)
    return proc.returncode or 0, out.decode(), err.decode()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def cc_route(name: str, token_url: str, client_id: str = "cid") -> str:
    """A client_credentials route in YAML."""
    return (
        f"  {name}:\n    upstream: https://{name}.example\n    auth:\n      grant: client_credentials\n"
        f"      token_url: {token_url}\n      client_id: {client_id}\n      client_secret: SENTINEL-SECRET\n"
    )


def login_route(name: str, redirect: str = "http://127.0.0.1:8765/callback") -> str:
    """An authorization_code route in YAML (nothing is contacted unless a login runs)."""
    return (
        f"  {name}:\n    upstream: https://{name}.example\n    auth:\n      grant: authorization_code\n"
        f"      authorize_url: https://{name}.example/authorize\n      token_url: https://{name}.example/token\n"
        f"      client_id: cid\n      client_secret: SENTINEL-SECRET\n      redirect_uri: {redirect}\n"
    )


async def start_proxy(config: str, cwd: Path, *args: str) -> asyncio.subprocess.Process:
    """`authproxy run` until it logs `listening` (JSON logs)."""
    proc = await asyncio.create_subprocess_exec(
        *CLI, "run", "-c", config, "--log-format", "json", *args, cwd=cwd, env=env(), stderr=asyncio.subprocess.PIPE
    )
    assert proc.stderr is not None
    while True:
        line = await asyncio.wait_for(proc.stderr.readline(), WAIT)
        assert line, "the proxy exited before listening"
        if b'"listening"' in line:
            return proc


async def stop(proc: asyncio.subprocess.Process) -> None:
    if proc.returncode is None:
        proc.terminate()
    await asyncio.wait_for(proc.wait(), WAIT)
