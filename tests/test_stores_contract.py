"""The TokenStore contract: every store (memory, file, encrypted file) passes the same tests."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

from authproxy.stores import LockingTokenStore, TokenStore, store_lock
from authproxy.stores.file import FileStore
from authproxy.stores.memory import MemoryStore
from authproxy.tokens import Token
from tests.fakes import settle

KEY = Fernet.generate_key().decode()
StoreFactory = Callable[[], TokenStore]


@pytest.fixture(params=["memory", "file", "file-encrypted"])
def make_store(request, tmp_path: Path) -> StoreFactory:
    """A factory: for shared stores each call is a new handle on the same storage (another process)."""
    if request.param == "memory":
        store = MemoryStore()
        return lambda: store
    key = KEY if request.param == "file-encrypted" else None
    return lambda: FileStore(tmp_path / "state" / "tokens.json", encryption_key=key)


async def test_load_save_overwrite_delete(make_store: StoreFactory) -> None:
    store = make_store()
    assert isinstance(store, TokenStore) and isinstance(store, LockingTokenStore)
    assert await store.load("route:a") is None
    token = Token("at", 100.5, refresh_token="rt", token_type="DPoP", obtained_at=50.25)
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
        async with store_lock(make_store(), key):
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
    await asyncio.wait_for(asyncio.gather(*tasks), 5)  # b may have waited in a thread (another handle)
    assert order == ["a+", "c+", "c-", "a-", "b+", "b-"]


async def test_save_inside_the_lock(make_store: StoreFactory) -> None:
    """What a credential does: load, fetch and save while holding the key's lock."""
    store = make_store()
    async with store_lock(store, "route:a"):
        assert await store.load("route:a") is None
        await store.save("route:a", Token("at", 5.0))
    assert await make_store().load("route:a") == Token("at", 5.0)
