"""MemoryStore specifics (the shared contract is in test_stores_contract.py)."""

from __future__ import annotations

import asyncio

from authproxy.credentials.tokens import Token
from authproxy.stores.base import TokenStore
from authproxy.stores.memory import MemoryStore
from tests.fakes import settle


async def test_tokens_are_kept_as_given() -> None:
    store = MemoryStore()
    token = Token("at", 100.0, refresh_token="rt", obtained_at=50.0)
    await store.save("route:a", token)
    assert await store.load("route:a") is token
    assert store.keys() == ["route:a"]


async def test_a_store_with_only_load_save_delete_gets_lock_status_and_close() -> None:
    """The base gives every store an in-process lock, a status and a close: callers never probe."""

    class Plain(TokenStore):
        kind = "plain"

        async def load(self, key: str) -> Token | None:
            return None

        async def save(self, key: str, token: Token) -> None:
            return None

        async def delete(self, key: str) -> None:
            return None

    plain = Plain()
    order: list[str] = []

    async def hold(name: str, release: asyncio.Event) -> None:
        async with plain.lock("k"):
            order.append(name)
            await release.wait()

    first, second = asyncio.Event(), asyncio.Event()
    tasks = [asyncio.ensure_future(hold("a", first)), asyncio.ensure_future(hold("b", second))]
    await settle()
    assert order == ["a"]  # b waits for a's lock
    first.set()
    second.set()
    await asyncio.gather(*tasks)
    assert order == ["a", "b"]
    assert plain.status() == {"kind": "plain", "state": "ok"}
    await plain.close()
