"""Scale-out on Redis Sentinel: two real proxy processes share a store whose master fails over mid-traffic.

A master, a replica and three sentinels are real `redis-server` processes; the proxies are
`python -m authproxy run` (tests/test_scale_out.py's helpers). The failover is SENTINEL FAILOVER,
awaited by polling the sentinels' and the nodes' own view with a deadline.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from authproxy.credentials.tokens import Token
from authproxy.stores.redis import RedisStore
from tests.fakes.redis_ha import SentinelSet, poll, running_sentinels
from tests.fakes.redis_server import needs_redis
from tests.fakes.token_server import TokenServer
from tests.fakes.upstream import FakeUpstream
from tests.test_scale_out import PASSWORD, SECRET, ProxyProcess, start_proxy, stop_proxy, tokens, write_config

pytestmark = needs_redis
__all__ = ["tokens"]  # the fixture, used by name


@pytest.fixture
def sentinels(tmp_path: Path) -> Iterator[SentinelSet]:
    with running_sentinels(tmp_path / "ha", password=PASSWORD) as ha:
        yield ha


@pytest.fixture
async def proxies() -> object:
    started: list[ProxyProcess] = []
    yield started
    for proxy in started:
        if proxy.proc.returncode is None:
            proxy.proc.kill()
            await proxy.proc.wait()


async def test_a_sentinel_failover_mid_traffic_fails_no_request_and_the_refresh_happens_once(
    tmp_path: Path, sentinels: SentinelSet, tokens: TokenServer, upstream: FakeUpstream, proxies: list[ProxyProcess]
) -> None:
    config, prefix = write_config(tmp_path, sentinels.url, tokens.url, upstream.url)
    seed = RedisStore(sentinels.url, key_prefix=prefix)  # what `authproxy login` would have saved
    await seed.save("route:api", Token("at-0", 2e9, obtained_at=1.0))
    upstream.valid_tokens = {"at-0"}
    proxies += await asyncio.gather(*(start_proxy(config) for _ in range(2)))
    for proxy in proxies:
        await proxy.wait_ready()
    failures: list[object] = []
    seen: set[str] = set()
    done = asyncio.Event()

    async def traffic(session: aiohttp.ClientSession, proxy: ProxyProcess) -> int:
        count = 0
        while not done.is_set():
            try:
                async with session.get(proxy.at("/api/auth/x")) as resp:
                    body = await resp.json(content_type=None)
                    if resp.status != 200:
                        failures.append((resp.status, body))
                    else:
                        seen.add(body["token"])
            except aiohttp.ClientError as exc:
                failures.append(exc)
            count += 1
        return count

    old = sentinels.current_master()
    async with aiohttp.ClientSession() as session:
        clients = [asyncio.ensure_future(traffic(session, proxies[i % 2])) for i in range(6)]
        new = await asyncio.to_thread(sentinels.failover)  # mid-traffic; returns once every node agrees
        assert new is not old
        for proxy in proxies:  # each store's next command (the health ping) is on the new master
            await asyncio.to_thread(poll, lambda p=proxy: _store_ok(p), "the proxies' stores to be ok")
        upstream.valid_tokens = {"at-1"}  # at-0 revoked: both proxies see 401s and must refresh
        await asyncio.to_thread(poll, lambda: "at-1" in seen, "a request to carry the new token")
        done.set()
        counts = await asyncio.gather(*clients)
    assert failures == []
    assert min(counts) > 0 and seen == {"at-0", "at-1"}
    assert len(tokens.requests) == 1  # one refresh for both proxies, under the lock on the new master
    with sentinels.node(new) as client:
        stored = json.loads(client.get(f"{prefix}token:route:api"))
    assert stored["access_token"] == "at-1"
    with sentinels.node(old) as replica:  # the old master, now a replica, got the new token too
        poll(lambda: json.loads(replica.get(f"{prefix}token:route:api"))["access_token"] == "at-1", "replication")
    assert [await stop_proxy(p) for p in proxies] == [0, 0]  # every log line read
    fetched = [p.count("token_refreshed", source="fetched") for p in proxies]
    assert sorted(fetched) == [0, 1]
    await seed.close()
    logged = json.dumps([p.events for p in proxies])
    for secret in (PASSWORD, SECRET, "at-0", "at-1"):
        assert secret not in logged


def _store_ok(proxy: ProxyProcess) -> bool:
    import urllib.request

    with urllib.request.urlopen(proxy.at("/-/status"), timeout=5) as resp:
        return json.load(resp)["store"]["state"] == "ok"
