"""Shared fixtures: a recording fake upstream and a factory for real proxies on ephemeral ports."""

from __future__ import annotations

import asyncio
import io
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml
from aiohttp import web

from authproxy.clock import Clock
from authproxy.config.load import load_config, parse_config
from authproxy.config.masking import secret_values
from authproxy.config.schema import Config
from authproxy.credentials.build import build_credential
from authproxy.credentials.credential import Credential
from authproxy.observability.logging import Redactor, configure_logging, flush_logs
from authproxy.server.app import build_app
from authproxy.server.runtime import RUNTIME
from authproxy.server.serve import start_server
from authproxy.stores.memory import MemoryStore
from authproxy.upstream.pool import NativeTransport
from tests.fakes import FixedRandom, make_route
from tests.fakes.clock import FakeClock
from tests.fakes.token_server import TokenServer
from tests.fakes.upstream import FakeUpstream


@dataclass
class RunningProxy:
    url: str
    app: web.Application
    config: Config
    runner: web.AppRunner

    def at(self, path: str) -> str:
        return self.url + path

    def credential(self, route: str = "api") -> Any:
        return self.app[RUNTIME].router.by_name[route].credential


class LogCapture:
    """Every log line the proxy writes, as text and parsed JSON."""

    def __init__(self) -> None:
        self.stream = io.StringIO()

    @property
    def text(self) -> str:
        flush_logs()
        return self.stream.getvalue()

    @property
    def events(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.text.splitlines() if line.strip()]


@pytest.fixture(autouse=True)
def _private_state_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The file store defaults to $XDG_STATE_HOME: never the developer's real token file."""
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))


@pytest.fixture(autouse=True)
def _no_egress_proxy_from_the_machine(monkeypatch: pytest.MonkeyPatch) -> None:
    """A developer's or CI's HTTPS_PROXY / NO_PROXY must not reroute the tests' loopback upstreams."""
    for name in ("https_proxy", "HTTPS_PROXY", "http_proxy", "HTTP_PROXY", "no_proxy", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def logs() -> LogCapture:
    return LogCapture()


@pytest.fixture
async def upstream() -> AsyncIterator[FakeUpstream]:
    fake = await FakeUpstream().start()
    yield fake
    await fake.stop()


ProxyFactory = Callable[..., Awaitable[RunningProxy]]


@pytest.fixture
async def make_proxy(logs: LogCapture) -> AsyncIterator[ProxyFactory]:
    """Start a proxy from a config (YAML text or dict) on 127.0.0.1:0; stopped after the test."""
    runners: list[web.AppRunner] = []

    async def factory(
        config: str | dict[str, Any],
        *,
        clock: Clock | None = None,
        env: dict[str, str] | None = None,
        path: Path | None = None,
        **app_kwargs: Any,
    ) -> RunningProxy:
        """`path`: write the config there and load it from the file, so `reload` can re-read it."""
        text = config if isinstance(config, str) else yaml.safe_dump(config)
        if path is not None:
            path.write_text(text)
            cfg = load_config(path, env=env or {})
        else:
            cfg = parse_config(text, env=env or {})
        redactor = Redactor(secret_values(cfg))
        configure_logging(cfg.log.level, "json", redactor=redactor, stream=logs.stream)
        app = build_app(cfg, clock=clock, config_path=str(path) if path else None, redactor=redactor, **app_kwargs)
        runner, url = await start_server(app, "127.0.0.1", 0)
        runners.append(runner)
        return RunningProxy(url, app, cfg, runner)

    yield factory
    for runner in runners:
        await runner.cleanup()


@pytest.fixture
async def client() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(auto_decompress=False, cookie_jar=aiohttp.DummyCookieJar()) as session:
        yield session


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def fake_clock(clock: FakeClock) -> FakeClock:
    return clock


@pytest.fixture
async def server(clock: FakeClock) -> AsyncIterator[TokenServer]:
    """A fake token endpoint that timestamps requests on the test's clock."""
    async with TokenServer(clock=clock) as srv:
        yield srv


@pytest.fixture
def token_server(server: TokenServer) -> TokenServer:
    return server


@pytest.fixture
async def transport() -> AsyncIterator[NativeTransport]:
    """The transport token requests go through, as the app gives credentials."""
    native = NativeTransport(limit=8)
    yield native
    await native.close()


@pytest.fixture
def store() -> MemoryStore:
    return MemoryStore()


@pytest.fixture
def build(
    transport: NativeTransport, store: MemoryStore, clock: FakeClock, server: TokenServer
) -> Callable[..., Credential]:
    """Build route `api`'s credential against `server` (deterministic jitter; nothing started)."""

    def factory(grant: str = "client_credentials", *, store_: object = None, **auth: object) -> Credential:
        auth.setdefault("token_url", server.url)
        auth.setdefault("client_id", "cid")
        auth.setdefault("client_secret", "csecret")
        route = make_route("api", grant=grant, **auth)
        cred = build_credential(route, transport=transport, store=store_ or store, clock=clock, rng=FixedRandom())
        assert cred is not None
        return cred

    return factory


async def wait_until(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    """Let the loop run until `predicate()` holds (the timeout only guards a hung test)."""
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0)


async def raw_exchange(url: str, payload: bytes, *, read_timeout: float = 5.0) -> bytes:
    """Send raw bytes to the server behind `url` and read until it closes (or times out)."""
    host, port = url.removeprefix("http://").rsplit(":", 1)
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        writer.write(payload)
        await writer.drain()
        chunks = []
        while True:
            try:
                chunk = await asyncio.wait_for(reader.read(65536), read_timeout)
            except TimeoutError:
                break
            if not chunk:
                break
            chunks.append(chunk)
            if b"\r\n\r\n" in b"".join(chunks) and b"Connection: close" not in b"".join(chunks):
                head, _, rest = b"".join(chunks).partition(b"\r\n\r\n")
                length = [
                    int(line.split(b":")[1])
                    for line in head.split(b"\r\n")
                    if line.lower().startswith(b"content-length:")
                ]
                if length and len(rest) >= length[0]:
                    break
        return b"".join(chunks)
    finally:
        writer.close()
