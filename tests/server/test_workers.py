"""`authproxy run --workers N` as real processes: one port, drained on SIGTERM, restarts, file-store rotation."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path
from typing import Any

import aiohttp
import yaml

from authproxy.clock import SystemClock
from tests.fakes.token_server import TokenServer
from tests.fakes.upstream import FakeUpstream
from tests.test_scale_out import ProxyProcess, send_all, start_proxy, stop_proxy


def write_config(tmp_path: Path, token_url: str, upstream: str, store: dict[str, Any], **auth: Any) -> Path:
    auth = {"grant": "client_credentials", "token_url": token_url, "client_id": "cid", "client_secret": "cs", **auth}
    config = {"shutdown_timeout": 20, "store": store, "routes": {"api": {"upstream": upstream, "auth": auth}}}
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


async def start_workers(config: Path, count: int) -> tuple[ProxyProcess, dict[str, Any]]:
    """The supervisor, once every worker reported ready (its `workers_ready` event)."""
    supervisor = await start_proxy(config, "--workers", str(count))
    return supervisor, await supervisor.wait_for("workers_ready")


def fresh_connections() -> aiohttp.ClientSession:
    """Every request on a new connection, so the kernel spreads them across the workers."""
    return aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True, limit=0))


async def test_workers_share_the_port_and_all_drain_on_sigterm(tmp_path: Path, upstream: FakeUpstream) -> None:
    async with TokenServer(clock=SystemClock()) as tokens:
        # Memory store on purpose: each worker fetches its own token, which shows which worker answered.
        config = write_config(tmp_path, tokens.url, upstream.url, {"kind": "memory"})
        upstream.valid_tokens = {"at-1", "at-2"}
        supervisor, ready = await start_workers(config, 2)
        assert ready["workers"] == 2 and len(set(ready["pids"])) == 2
        for index in (0, 1):  # one per worker, same port (its log line may follow workers_ready: writes are batched)
            assert (await supervisor.wait_for("listening", worker=index))["url"] == supervisor.url
        async with fresh_connections() as session:
            results = await send_all(session, [supervisor.url + "/api/auth/x"] * 60)
            assert {status for status, _ in results} == {200}
            assert {token for _, token in results} == {"at-1", "at-2"}  # both workers served
            assert len(tokens.requests) == 2
            supervisor.proc.send_signal(signal.SIGHUP)  # forwarded: every worker re-reads the config
            for index in (0, 1):
                await supervisor.wait_for("reloaded", worker=index)
            async with session.get(supervisor.url + "/api/chunks/2") as resp:  # in flight during SIGTERM
                upstream.chunk_gate.put_nowait(None)
                assert await resp.content.readuntil(b"\n\n") == b"data: 0\n\n"
                supervisor.proc.send_signal(signal.SIGTERM)
                await supervisor.wait_for("shutting_down", signal="SIGTERM")
                upstream.chunk_gate.put_nowait(None)
                assert await resp.read() == b"data: 1\n\n"
        assert await stop_proxy(supervisor) == 0
        assert supervisor.count("stopped") == 3  # both workers, then the supervisor
        assert supervisor.events[-1]["exit_codes"] == [0, 0]
        access = [e for e in supervisor.events if e.get("event") == "request" and e.get("path") == "/api/auth/x"]
        assert len(access) == 60 and {e.get("worker") for e in access} == {0, 1}  # each line names its worker


async def test_a_dead_worker_is_restarted_and_workers_exit_with_their_supervisor(
    tmp_path: Path, upstream: FakeUpstream
) -> None:
    async with TokenServer(clock=SystemClock()) as tokens:
        config = write_config(tmp_path, tokens.url, upstream.url, {"kind": "file", "path": str(tmp_path / "t.json")})
        upstream.valid_tokens = {"at-1"}
        supervisor, ready = await start_workers(config, 2)
        try:
            os.kill(ready["pids"][0], signal.SIGKILL)
            await supervisor.wait_for("worker_exited", worker=0, exit_code=-9)
            await supervisor.wait_for("listening", worker=0, timeout=30)  # the replacement
            async with fresh_connections() as session:
                results = await send_all(session, [supervisor.url + "/api/auth/x"] * 20)
            assert results == [(200, "at-1")] * 20
            assert len(tokens.requests) == 1  # the workers share the file store's token
            live = [e["pid"] for e in supervisor.events if e.get("event") == "worker_started"]
            supervisor.proc.kill()  # no SIGTERM to forward: the workers notice on their own
            await supervisor.proc.wait()
            for pid in [*live, ready["pids"][1]]:
                await wait_gone(pid)
        finally:
            if supervisor.proc.returncode is None:
                supervisor.proc.kill()


async def test_workers_on_the_file_store_use_a_rotating_refresh_token_once(
    tmp_path: Path, upstream: FakeUpstream
) -> None:
    async with TokenServer(clock=SystemClock()) as tokens:
        rotation = tokens.rotate_refresh_tokens("rt-0")
        store = {"kind": "file", "path": str(tmp_path / "tokens.json")}
        config = write_config(tmp_path, tokens.url, upstream.url, store, grant="refresh_token", refresh_token="rt-0")
        supervisor, _ = await start_workers(config, 2)
        try:
            async with fresh_connections() as session:
                for n in range(1, 4):  # every round, both workers get a 401 for the same token
                    upstream.valid_tokens = {f"at-{n + 1}"}
                    results = await send_all(session, [supervisor.url + "/api/auth/x"] * 20)
                    assert results == [(200, f"at-{n + 1}")] * 20
            assert rotation.reused == []
            assert rotation.used == ["rt-0", "rt-1", "rt-2", "rt-3"]
        finally:
            supervisor.proc.send_signal(signal.SIGTERM)
        assert await stop_proxy(supervisor) == 0


async def wait_gone(pid: int, timeout: float = 30.0) -> None:
    async with asyncio.timeout(timeout):
        while True:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return
            await asyncio.sleep(0.05)  # clock-ok: polling a real subprocess until it has exited
