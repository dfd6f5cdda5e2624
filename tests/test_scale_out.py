"""Scale-out against a real redis-server: several real proxy processes share tokens and refresh once.

Every proxy here is `python -m authproxy run` in its own process; the token server and upstream are
the real fakes, in the test's loop; Redis is a real `redis-server` on a free loopback port.
"""

from __future__ import annotations

import asyncio
import json
import sys
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

from authproxy.clock import SystemClock
from authproxy.credentials.tokens import Token
from authproxy.stores.redis import RedisStore
from tests.fakes.redis_server import RedisServer, needs_redis, running_redis
from tests.fakes.token_server import Reply, TokenServer
from tests.fakes.upstream import FakeUpstream

pytestmark = needs_redis
CLI = [sys.executable, "-m", "authproxy", "run", "--listen", "127.0.0.1:0", "--log-format", "json"]
STARTUP = 30.0  # seconds a proxy may take to start on a loaded machine (only guards a hang)
PASSWORD, SECRET = "SENTINEL-REDIS-PW", "SENTINEL-CLIENT-SECRET"  # must never reach a log line


@dataclass
class ProxyProcess:
    """A real `authproxy run` whose JSON log lines are collected as they arrive."""

    proc: asyncio.subprocess.Process
    events: list[dict[str, Any]] = field(default_factory=list)
    url: str = ""
    _arrived: asyncio.Event = field(default_factory=asyncio.Event)
    _reader: asyncio.Task[None] | None = None

    async def _read(self) -> None:
        assert self.proc.stderr is not None
        while line := await self.proc.stderr.readline():
            try:
                self.events.append(json.loads(line))
            except ValueError:
                self.events.append({"event": "raw", "text": line.decode(errors="replace")})
            self._arrived.set()
        self._arrived.set()

    async def wait_for(self, event: str, timeout: float = STARTUP, **fields: Any) -> dict[str, Any]:
        """The first log event named `event` with `fields` (waits for it to be written)."""
        async with asyncio.timeout(timeout):
            while True:
                for found in self.events:
                    if found.get("event") == event and all(found.get(k) == v for k, v in fields.items()):
                        return found
                assert self._reader is None or not self._reader.done(), (
                    f"the proxy exited before logging {event}: {self.events[-5:]}"
                )
                self._arrived.clear()
                await self._arrived.wait()

    def count(self, event: str, **fields: Any) -> int:
        return sum(1 for e in self.events if e.get("event") == event and all(e.get(k) == v for k, v in fields.items()))

    def at(self, path: str) -> str:
        return self.url + path

    async def wait_ready(self, timeout: float = STARTUP) -> None:
        """Until /-/ready answers 200: the proxy holds a valid token (fetched, adopted or loaded)."""
        async with asyncio.timeout(timeout), aiohttp.ClientSession() as session:
            while True:
                async with session.get(self.at("/-/ready")) as resp:
                    if resp.status == 200:
                        return
                await asyncio.sleep(0.05)  # clock-ok: polling a real subprocess's readiness


async def start_proxy(config: Path, *args: str, env: dict[str, str] | None = None) -> ProxyProcess:
    proc = await asyncio.create_subprocess_exec(*CLI, "-c", str(config), *args, stderr=asyncio.subprocess.PIPE, env=env)
    proxy = ProxyProcess(proc)
    proxy._reader = asyncio.ensure_future(proxy._read())
    proxy.url = (await proxy.wait_for("listening"))["url"]
    return proxy


async def stop_proxy(proxy: ProxyProcess) -> int:
    if proxy.proc.returncode is None:
        proxy.proc.terminate()
    code = await asyncio.wait_for(proxy.proc.wait(), 30)
    if proxy._reader is not None:
        await proxy._reader
    return code


@pytest.fixture
async def proxies() -> AsyncIterator[list[ProxyProcess]]:
    """Proxies a test starts (appended to this list) are stopped after it, whatever happens."""
    started: list[ProxyProcess] = []
    yield started
    for proxy in started:
        if proxy.proc.returncode is None:
            proxy.proc.kill()
            await proxy.proc.wait()


@pytest.fixture
def redis(tmp_path: Path) -> Iterator[RedisServer]:
    with running_redis(tmp_path / "redis", password=PASSWORD) as server:
        yield server


@pytest.fixture
async def tokens() -> AsyncIterator[TokenServer]:
    async with TokenServer(clock=SystemClock()) as server:
        yield server


def write_config(tmp_path: Path, redis_url: str, token_url: str, upstream: str, **auth: Any) -> tuple[Path, str]:
    """A config with route `api` on a Redis store under a fresh prefix; returns (path, prefix)."""
    prefix = f"t{uuid.uuid4().hex[:8]}:"
    auth = {"grant": "client_credentials", "token_url": token_url, "client_id": "cid", "client_secret": SECRET, **auth}
    config = {
        "shutdown_timeout": 5,
        "log": {"access_log": False},
        "store": {"kind": "redis", "url": redis_url, "key_prefix": prefix, "lock_ttl": 2},
        "routes": {"api": {"upstream": upstream, "auth": auth}},
    }
    path = tmp_path / f"config-{prefix[:-1]}.yaml"
    path.write_text(yaml.safe_dump(config))
    return path, prefix


async def send_all(
    session: aiohttp.ClientSession, urls: list[str], check: Callable[[int, dict[str, Any]], None] | None = None
) -> list[tuple[int, str | None]]:
    """GET every URL at once; (status, token the upstream saw) per request."""

    async def one(url: str) -> tuple[int, str | None]:
        async with session.get(url) as resp:
            body = await resp.json(content_type=None)
            return resp.status, body.get("token") if isinstance(body, dict) else None

    return await asyncio.gather(*(one(url) for url in urls))


async def test_three_processes_renew_once_across_an_expiry(
    tmp_path: Path, redis: RedisServer, tokens: TokenServer, upstream: FakeUpstream, proxies: list[ProxyProcess]
) -> None:
    """1000 requests through 3 processes while the shared token is renewed and expires: 1 token request."""
    lifetime = 8.0
    config, prefix = write_config(tmp_path, redis.url, tokens.url, upstream.url, min_leeway=1)
    clock = SystemClock()
    now = clock.now()
    expires_at = now + lifetime  # renewed ~1 s before, by whichever process takes the Redis lock first
    seed = RedisStore(redis.url, key_prefix=prefix)  # what `authproxy login` would have saved
    await seed.save("route:api", Token("at-0", expires_at, obtained_at=now))
    tokens.issued = 0
    upstream.valid_tokens = {"at-0", "at-1"}
    proxies += await asyncio.gather(*(start_proxy(config) for _ in range(3)))
    assert clock.now() < expires_at - 2.5, "the proxies took too long to start for the token to expire under load"

    sent: list[tuple[float, asyncio.Task[tuple[int, str | None]]]] = []
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
        batches, per_batch = 20, 50  # 1000 requests, 50 at a time, spread until 1 s past the expiry
        start = clock.now()
        gap = (expires_at + 1.0 - start) / (batches - 1)
        for batch in range(batches):
            delay = start + batch * gap - clock.now()
            if delay > 0:
                await asyncio.sleep(delay)  # clock-ok: paces the load across the subprocesses' real token expiry
            for i in range(per_batch):
                url = proxies[i % 3].at("/api/auth/x")
                sent.append((clock.now(), asyncio.ensure_future(send_all(session, [url]))))
        results = [(at, (await task)[0]) for at, task in sent]

    assert len(results) == 1000
    assert [r for _, r in results if r[0] != 200] == []
    assert len(tokens.requests) == 1  # exactly one token request for three processes
    assert {token for _, (_, token) in results} == {"at-0", "at-1"}
    assert [t for at, (_, t) in results if at > expires_at and t != "at-1"] == []  # never an expired token
    fetched = [p.count("token_refreshed", source="fetched") for p in proxies]
    adopted = [p.count("token_refreshed", source="store") for p in proxies]
    assert sorted(fetched) == [0, 0, 1] and sorted(adopted) == [0, 1, 1]
    assert [await stop_proxy(p) for p in proxies] == [0, 0, 0]
    assert (await seed.load("route:api")).access_token == "at-1"  # type: ignore[union-attr]
    await seed.close()


async def test_a_rotating_refresh_token_is_never_used_twice(
    tmp_path: Path, redis: RedisServer, tokens: TokenServer, upstream: FakeUpstream, proxies: list[ProxyProcess]
) -> None:
    """Three processes start at once, then every round all of them see a 401 at the same moment."""
    rotation = tokens.rotate_refresh_tokens("rt-0")
    config, _ = write_config(tmp_path, redis.url, tokens.url, upstream.url, grant="refresh_token", refresh_token="rt-0")
    proxies += await asyncio.gather(*(start_proxy(config) for _ in range(3)))
    for proxy in proxies:  # one fetched with rt-0 at startup, the others adopted or loaded its token
        await proxy.wait_ready()
    assert rotation.used == ["rt-0"]
    rounds = 5
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
        for n in range(1, rounds + 1):
            upstream.valid_tokens = {f"at-{n + 1}"}  # at-n is revoked: every process gets a 401 and refreshes
            results = await send_all(session, [proxies[i % 3].at("/api/auth/x") for i in range(30)])
            assert results == [(200, f"at-{n + 1}")] * 30
    assert rotation.reused == []
    assert rotation.used == [f"rt-{n}" for n in range(rounds + 1)]
    assert len(tokens.requests) == rounds + 1
    assert [await stop_proxy(p) for p in proxies] == [0, 0, 0]


async def test_redis_killed_and_restarted_mid_traffic_fails_no_request(
    tmp_path: Path, redis: RedisServer, tokens: TokenServer, upstream: FakeUpstream, proxies: list[ProxyProcess]
) -> None:
    """Cached tokens keep serving; a refresh during the outage is local; Redis gets the token back."""
    config, prefix = write_config(tmp_path, redis.url, tokens.url, upstream.url)
    upstream.valid_tokens = {"at-1"}
    proxies += await asyncio.gather(*(start_proxy(config) for _ in range(2)))
    for proxy in proxies:
        await proxy.wait_ready()
    failures: list[object] = []
    done = asyncio.Event()

    async def traffic(session: aiohttp.ClientSession, proxy: ProxyProcess) -> int:
        count = 0
        while not done.is_set():
            try:
                async with session.get(proxy.at("/api/auth/x")) as resp:
                    await resp.read()
                    if resp.status != 200:
                        failures.append(resp.status)
            except aiohttp.ClientError as exc:
                failures.append(exc)
            count += 1
        return count

    async with aiohttp.ClientSession() as session:
        clients = [asyncio.ensure_future(traffic(session, proxies[i % 2])) for i in range(8)]
        redis.kill()
        for proxy in proxies:  # the health ping (or a command) notices within seconds
            await proxy.wait_for("token_store_unavailable", timeout=15)
        async with session.get(proxies[0].at("/-/ready")) as resp:
            ready = await resp.json()
        assert resp.status == 200 and ready["store"]["state"] == "unavailable"
        upstream.valid_tokens = {"at-2", "at-3"}  # at-1 revoked: each process refreshes on its own, with a warning
        for proxy in proxies:
            await proxy.wait_for("token_refreshed", source="fetched", timeout=15)
            await proxy.wait_for("token_store_unavailable", op="lock")
        redis.start()
        for proxy in proxies:
            await proxy.wait_for("token_store_reconnected", timeout=15)
            await proxy.wait_for("token_store_written_back", key="route:api")
        async with session.get(proxies[1].at("/-/status")) as resp:
            status = await resp.json()
        assert status["store"] == {"kind": "redis", "state": "ok", "since": status["store"]["since"], "error": None,
                                   "pending_writes": 0}  # fmt: skip
        done.set()
        counts = await asyncio.gather(*clients)
    assert failures == []
    assert sum(counts) > 0
    assert len(tokens.requests) == 3  # one at startup (shared), one per process during the outage
    store = RedisStore(redis.url, key_prefix=prefix)
    assert (await store.load("route:api")).access_token in {"at-2", "at-3"}  # type: ignore[union-attr]
    await store.close()
    assert [await stop_proxy(p) for p in proxies] == [0, 0]
    logged = json.dumps([p.events for p in proxies])
    for secret in (PASSWORD, SECRET, "at-1", "at-2", "at-3"):
        assert secret not in logged


async def test_a_lock_holder_killed_mid_refresh_is_taken_over_after_the_lock_expires(
    tmp_path: Path, redis: RedisServer, tokens: TokenServer, upstream: FakeUpstream, proxies: list[ProxyProcess]
) -> None:
    never = asyncio.Event()

    async def hang(request: object) -> Reply:
        await never.wait()
        return Reply.error("server_error", status=500)

    tokens.script.append(hang)
    config, _ = write_config(tmp_path, redis.url, tokens.url, upstream.url)  # lock_ttl: 2
    upstream.valid_tokens = {"at-1"}
    holder = await start_proxy(config)
    proxies.append(holder)
    await tokens.wait_for_requests(1, timeout=STARTUP)  # the holder is fetching, holding the Redis lock
    waiter = await start_proxy(config)
    proxies.append(waiter)
    await waiter.wait_for("token_lock_wait")
    assert len(tokens.requests) == 1
    holder.proc.kill()  # mid-refresh: its lock is never released, only expires
    await holder.proc.wait()
    killed = SystemClock().monotonic()
    await waiter.wait_for("token_refreshed", source="fetched")
    assert len(tokens.requests) == 2
    assert tokens.requests[1].at is not None and tokens.requests[1].at - killed > 0.5  # waited for the expiry
    async with aiohttp.ClientSession() as session, session.get(waiter.at("/api/auth/x")) as resp:
        assert (resp.status, await resp.json()) == (200, {"token": "at-1", "body_bytes": 0})
    never.set()
    assert await stop_proxy(waiter) == 0
