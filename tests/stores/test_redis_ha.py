"""RedisStore on highly available Redis, all real processes: Cluster hash tags keep one credential in
one slot; a Sentinel master killed while a lock is held loses neither the lock nor the saved token
(both were acknowledged by the replica); and the misconfigurations (a master no sentinel knows, a
cluster URL at one plain server) are clear errors that leave routes waiting, never a crash."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp
import pytest
import redis
from cryptography.fernet import Fernet

from authproxy.credentials.tokens import Token
from authproxy.stores.redis import RedisStore, StoreUnavailable
from tests.conftest import LogCapture, ProxyFactory, wait_until
from tests.fakes.redis_ha import ClusterNodes, SentinelSet, running_sentinels
from tests.fakes.redis_server import RedisServer, needs_redis, running_redis
from tests.fakes.token_server import TokenServer
from tests.fakes.upstream import FakeUpstream
from tests.stores.conftest import MASTER_PASSWORD

pytestmark = needs_redis
KEY = Fernet.generate_key().decode()


@pytest.fixture
async def handles() -> AsyncIterator[list[RedisStore]]:
    opened: list[RedisStore] = []
    yield opened
    for store in opened:
        await store.close()


def open_store(handles: list[RedisStore], url: str, **kwargs: object) -> RedisStore:
    kwargs.setdefault("key_prefix", f"t{uuid.uuid4().hex[:8]}:")
    handles.append(RedisStore(url, **kwargs))  # type: ignore[arg-type]
    return handles[-1]


# -- Cluster ---------------------------------------------------------------------------------------


async def test_cluster_keys_carry_a_hash_tag_so_a_credentials_entry_and_lock_share_a_slot(
    redis_cluster: ClusterNodes, handles: list[RedisStore]
) -> None:
    store = open_store(handles, redis_cluster.url, key_prefix="h:", encryption_key=KEY)
    node = redis.Redis(port=redis_cluster.nodes[0].port)
    keys = [f"route:r{i}" for i in range(12)] + ["route:odd}key", "route:with spaces"]
    slots = set()
    for key in keys:
        await store.save(key, Token(f"at-{key}", 2e9, obtained_at=1.0))
        async with store.lock(key):  # SET NX, EXTEND and RELEASE run on the slot's node
            token_slot = node.cluster("keyslot", f"h:token:{{{key}}}")  # Redis's own CRC16, not ours
            assert node.cluster("keyslot", f"h:lock:{{{key}}}") == token_slot
        slots.add(token_slot)
    assert len(slots) > 3  # the credentials spread over the cluster; each one stays together
    assert store.keys() == sorted(keys)  # every node scanned, the tags taken off
    again = open_store(handles, redis_cluster.url, key_prefix="h:", encryption_key=KEY)
    assert await again.load("route:odd}key") == Token("at-route:odd}key", 2e9, obtained_at=1.0)
    node.close()


async def test_cluster_write_back_runs_its_script_on_the_keys_node(
    redis_cluster: ClusterNodes, handles: list[RedisStore]
) -> None:
    """WRITE_BACK (one key, one slot) after an outage: what the monitor runs, here run directly."""
    from authproxy.stores.redis_format import WRITE_BACK, encode

    store = open_store(handles, redis_cluster.url, key_prefix="w:")
    await store.save("route:a", Token("newer", 2e9, obtained_at=300.0))
    write_back = store._script(WRITE_BACK)
    older = Token("older", 2e9, obtained_at=200.0)
    assert await write_back(keys=["w:token:{route:a}"], args=[encode("route:a", older, None), 200.0]) == 0
    assert (await store.load("route:a")).access_token == "newer"  # type: ignore[union-attr]


async def test_a_cluster_url_at_a_plain_server_is_a_clear_error_and_no_fallback(
    tmp_path: Path, handles: list[RedisStore], logs: LogCapture
) -> None:
    from authproxy.observability.logging import configure_logging

    configure_logging("info", "json", stream=logs.stream)
    with running_redis(tmp_path / "plain") as server:
        store = open_store(handles, f"redis+cluster://127.0.0.1:{server.port}", fallback=True)
        for attempt in (store.load("route:a"), store.save("route:a", Token("at", 2e9))):
            with pytest.raises(StoreUnavailable) as err:
                await attempt
            assert err.value.misconfigured
            assert f"127.0.0.1:{server.port} is not a Redis Cluster" in str(err.value)
        status = store.status()
        assert status["state"] == "unavailable" and "redis://host:6379/0" in str(status["error"])
        [event] = [e for e in logs.events if e["event"] == "token_store_unavailable"]
        assert "routes wait" in event["detail"]


# -- Sentinel --------------------------------------------------------------------------------------


@pytest.fixture
def own_sentinels(tmp_path: Path) -> Iterator[SentinelSet]:
    """A Sentinel set of this test's own: it will lose its master."""
    with running_sentinels(tmp_path / "ha", password=MASTER_PASSWORD) as ha:
        yield ha


async def test_a_master_killed_while_a_lock_is_held_keeps_the_lock_and_the_token_on_the_new_master(
    own_sentinels: SentinelSet, handles: list[RedisStore], logs: LogCapture
) -> None:
    """Lock and save wait for the replica's acknowledgement, so kill -9 of the master loses neither."""
    from authproxy.observability.logging import configure_logging

    configure_logging("info", "json", stream=logs.stream)
    ha = own_sentinels
    holder = open_store(handles, ha.url, key_prefix="f:", lock_ttl=60)
    other = open_store(handles, ha.url, key_prefix="f:", lock_ttl=60)
    async with holder.lock("route:a"):
        await holder.save("route:a", Token("at-1", 2e9, refresh_token="rt-1", obtained_at=10.0))
        old = ha.current_master()
        assert old is ha.master
        assert [e for e in logs.events if e["event"] == "token_store_not_replicated"] == []  # the replica had both
        old.kill()  # no time to replicate anything more: only what WAIT confirmed is on the replica
        await asyncio.to_thread(ha.wait_for_master, ha.replica, None)
        with ha.node(ha.replica) as client:
            owner = client.get("f:lock:route:a")
        assert owner is not None  # the lock survived the failover...
        waiting = other.lock("route:a")
        waiter = asyncio.ensure_future(waiting.__aenter__())
        await wait_until(lambda: any(e["event"] == "token_lock_wait" for e in logs.events))
        assert not waiter.done()  # ...and still keeps another process out
        assert await other.load("route:a") == Token("at-1", 2e9, refresh_token="rt-1", obtained_at=10.0)
    await asyncio.wait_for(waiter, 10)  # released by its owner on the new master, not expired (ttl 60 s)
    with ha.node(ha.replica) as client:
        assert client.get("f:lock:route:a") not in (None, owner)
    await waiting.__aexit__(None, None, None)
    unreplicated = [e for e in logs.events if e["event"] == "token_store_not_replicated"]
    assert [(e["op"], e["key"]) for e in unreplicated] == [("lock", "route:a")]  # the new master has no replica


async def test_a_master_no_sentinel_knows_is_a_clear_error_and_the_route_waits(
    redis_sentinels: SentinelSet, make_proxy: ProxyFactory, upstream: FakeUpstream, token_server: TokenServer
) -> None:
    """Not an outage to ride out on local copies: each process refreshing alone could spend a token twice."""
    url = redis_sentinels.url.replace("/mymaster/", "/no-such-master/")
    store = RedisStore(url, key_prefix=f"t{uuid.uuid4().hex[:8]}:", fallback=True)  # as `authproxy run` builds it
    proxy = await make_proxy(
        {
            "store": {"kind": "redis", "url": url},
            "routes": {
                "api": {
                    "upstream": upstream.url,
                    "auth": {
                        "grant": "client_credentials",
                        "token_url": token_server.url,
                        "client_id": "c",
                        "client_secret": "SENTINEL-CLIENT-SECRET",
                    },
                }
            },
        },
        store=store,
    )

    sentinels = ", ".join(f"127.0.0.1:{s.port}" for s in redis_sentinels.sentinels)
    async with aiohttp.ClientSession() as session:
        async with session.get(proxy.at("/api/x")) as resp:
            body = await resp.json()
        assert resp.status == 503 and body["error"]["route"] == "api"
        async with session.get(proxy.at("/-/ready")) as resp:
            ready = await resp.json()
        assert resp.status == 503 and [r["route"] for r in ready["not_ready"]] == ["api"]
        error = ready["store"]["error"]
        assert ready["store"]["state"] == "unavailable"
        assert f"no sentinel knows a master named 'no-such-master' (asked {sentinels})" in error
        assert "SENTINEL MONITOR" in error and MASTER_PASSWORD not in str(ready)
        async with session.get(proxy.at("/-/status")) as resp:
            status = await resp.json()
        assert status["store"]["error"] == error and MASTER_PASSWORD not in str(status)
    assert token_server.requests == []  # no token fetched outside the shared lock
    assert upstream.seen == []


async def test_sentinel_password_is_for_the_sentinels_and_the_url_password_for_the_master(
    tmp_path: Path, handles: list[RedisStore]
) -> None:
    with running_sentinels(tmp_path / "ha", password=MASTER_PASSWORD, sentinel_password="SENTINEL-OWN-PW") as ha:
        store = open_store(handles, ha.url, key_prefix="sp:", sentinel_password="SENTINEL-OWN-PW")
        await store.save("route:a", Token("at", 2e9))
        assert await store.load("route:a") == Token("at", 2e9)
        without = open_store(handles, ha.url)
        with pytest.raises(StoreUnavailable) as err:
            await without.load("route:a")
        assert "no sentinel answered" in str(err.value) and "store.sentinel_password" in str(err.value)
        assert not err.value.misconfigured  # the sentinels may be back with the password unchanged
        keyed_url = ha.url.replace("redis+sentinel://", "redis://").replace("/mymaster/0", "/0")
        keyed = open_store(
            handles, keyed_url, key_prefix="sp:", sentinel_master="mymaster", sentinel_password="SENTINEL-OWN-PW"
        )
        assert await keyed.load("route:a") == Token("at", 2e9)  # the same, said with keys
        for text in (str(err.value), repr(store), str(store.status()), store.where()):
            assert MASTER_PASSWORD not in text and "SENTINEL-OWN-PW" not in text


def test_a_plain_url_keeps_the_untagged_names(tmp_path: Path) -> None:
    """One server and Sentinel keep the names entries were stored under before Cluster support."""
    server = RedisServer(tmp_path)  # never started: names only
    store = RedisStore(server.url, key_prefix="p:")
    assert (store._token_key("route:a"), store._lock_key("route:a")) == ("p:token:route:a", "p:lock:route:a")
