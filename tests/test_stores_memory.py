"""MemoryStore against the TokenStore contract."""

from __future__ import annotations

import asyncio

from authproxy.stores import LockingTokenStore, TokenStore, store_lock
from authproxy.stores.memory import MemoryStore
from authproxy.tokens import Token
from tests.fakes import settle


async def test_load_save_delete() -> None:
    store = MemoryStore()
    assert isinstance(store, TokenStore) and isinstance(store, LockingTokenStore)
    assert await store.load("route:a") is None
    token = Token("at", 100.0, refresh_token="rt", obtained_at=50.0)
    await store.save("route:a", token)
    assert await store.load("route:a") == token
    await store.save("route:a", Token("at2", 200.0))
    assert (await store.load("route:a")).access_token == "at2"
    assert store.keys() == ["route:a"]
    await store.delete("route:a")
    await store.delete("route:missing")
    assert await store.load("route:a") is None


async def test_lock_serialises_one_key_only() -> None:
    store = MemoryStore()
    order: list[str] = []

    async def holder(key: str, name: str, release: asyncio.Event) -> None:
        async with store_lock(store, key):
            order.append(f"{name}+")
            await release.wait()
            order.append(f"{name}-")

    first, second, other = asyncio.Event(), asyncio.Event(), asyncio.Event()
    tasks = [
        asyncio.ensure_future(holder("k", "a", first)),
        asyncio.ensure_future(holder("k", "b", second)),
        asyncio.ensure_future(holder("other", "c", other)),
    ]
    await settle()
    assert order == ["a+", "c+"]
    second.set()
    other.set()
    await settle()
    assert order == ["a+", "c+", "c-"]
    first.set()
    await asyncio.gather(*tasks)
    assert order == ["a+", "c+", "c-", "a-", "b+", "b-"]


async def test_store_lock_is_a_no_op_for_stores_without_one() -> None:
    class Plain:
        async def load(self, key: str) -> Token | None:
            return None

        async def save(self, key: str, token: Token) -> None:
            return None

        async def delete(self, key: str) -> None:
            return None

    plain = Plain()
    assert isinstance(plain, TokenStore) and not isinstance(plain, LockingTokenStore)
    async with store_lock(plain, "k"):
        pass
