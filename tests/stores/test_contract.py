"""The TokenStore contract: every store (memory, file, redis, both also encrypted) passes the same tests."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

from authproxy.credentials.tokens import Token
from authproxy.stores.base import TokenStore
from authproxy.stores.file import FileStore
from authproxy.stores.memory import MemoryStore
from authproxy.stores.redis import RedisStore
from tests.conftest import wait_until
from tests.fakes import settle
from tests.fakes.redis_server import REDIS_SERVER, REQUIRED, RedisServer, running_redis

KEY = Fernet.generate_key().decode()
StoreFactory = Callable[[], TokenStore]


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """One real redis-server for the suite; each test uses its own key prefix."""
    if REDIS_SERVER is None and not REQUIRED:
        pytest.skip("redis-server is not installed (.ci/run installs it)")
    with running_redis(tmp_path_factory.mktemp("redis")) as server:
        yield server


REDIS_URLS = {"redis": "redis_server", "redis-encrypted": "redis_server", "sentinel": "redis_sentinels",
              "cluster": "redis_cluster", "cluster-encrypted": "redis_cluster"}  # fmt: skip


@pytest.fixture(params=["memory", "file", "file-encrypted", *REDIS_URLS])
async def make_store(request, tmp_path: Path) -> AsyncIterator[StoreFactory]:
    """A factory: for shared stores each call is a new handle on the same storage (another process)."""
    if request.param == "memory":
        store = MemoryStore()
        yield lambda: store
    elif request.param in REDIS_URLS:
        url, prefix = request.getfixturevalue(REDIS_URLS[request.param]).url, f"test-{uuid.uuid4().hex[:8]}:"
        key = KEY if request.param.endswith("encrypted") else None
        handles: list[RedisStore] = []
        yield lambda: handles.append(RedisStore(url, key_prefix=prefix, encryption_key=key)) or handles[-1]
        for handle in handles:
            await handle.close()
    else:
        key = KEY if request.param == "file-encrypted" else None
        yield lambda: FileStore(tmp_path / "state" / "tokens.json", encryption_key=key)


async def test_load_save_overwrite_delete(make_store: StoreFactory) -> None:
    store = make_store()
    assert isinstance(store, TokenStore)
    assert await store.load("route:a") is None
    token = Token("at", 100.5, refresh_token="rt", token_type="DPoP", obtained_at=50.25, identity="v1:abc", scope="a b")
    await store.save("route:a", token)
    assert await make_store().load("route:a") == token
    await store.save("route:a", Token("at2", None))
    assert await make_store().load("route:a") == Token("at2", None)
    await store.delete("route:a")
    await store.delete("route:missing")
    assert await make_store().load("route:a") is None


async def test_keys_are_independent(make_store: StoreFactory) -> None:
    store = make_store()
    await store.save("route:a", Token("a", 1.0))
    await store.save("route:b", Token("b", 2.0, refresh_token="rb"))
    await store.delete("route:a")
    assert await make_store().load("route:b") == Token("b", 2.0, refresh_token="rb")
    assert make_store().keys() == ["route:b"]  # type: ignore[attr-defined]


async def test_odd_values_round_trip(make_store: StoreFactory) -> None:
    token = Token('ä€"\\\n', 1e12, refresh_token="r" * 5000)
    await make_store().save("route:odd/key with spaces", token)
    assert await make_store().load("route:odd/key with spaces") == token


async def test_lock_serialises_one_key_only(make_store: StoreFactory) -> None:
    order: list[str] = []

    async def holder(key: str, name: str, release: asyncio.Event) -> None:
        async with make_store().lock(key):
            order.append(f"{name}+")
            await release.wait()
            order.append(f"{name}-")

    first, second, other = asyncio.Event(), asyncio.Event(), asyncio.Event()
    tasks = [asyncio.ensure_future(holder("k", "a", first)), asyncio.ensure_future(holder("other", "c", other))]
    await wait_until(lambda: len(order) >= 2)  # a shared store may need a round trip to lock (in any order)
    tasks.append(asyncio.ensure_future(holder("k", "b", second)))  # tries while a holds the lock
    await settle()
    assert sorted(order) == ["a+", "c+"]
    second.set()
    other.set()
    await settle()
    assert sorted(order[:2]) == ["a+", "c+"] and order[2:] == ["c-"]
    first.set()
    await asyncio.wait_for(asyncio.gather(*tasks), 5)  # b may have waited in a thread (another handle)
    assert order[2:] == ["c-", "a-", "b+", "b-"]


async def test_save_inside_the_lock(make_store: StoreFactory) -> None:
    """What a credential does: load, fetch and save while holding the key's lock."""
    store = make_store()
    async with store.lock("route:a"):
        assert await store.load("route:a") is None
        await store.save("route:a", Token("at", 5.0))
    assert await make_store().load("route:a") == Token("at", 5.0)


async def test_status_and_close(make_store: StoreFactory) -> None:
    """Every store reports its kind and state (never a secret) and can be closed, whatever its backend."""
    store = make_store()
    await store.save("route:a", Token("SENTINEL-AT", 5.0, refresh_token="SENTINEL-RT"))
    status = store.status()
    assert status["kind"] in ("memory", "file", "redis") and status["state"] in ("ok", "unknown")
    assert "SENTINEL" not in repr(status)
    await store.close()
