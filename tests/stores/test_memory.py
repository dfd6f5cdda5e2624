"""MemoryStore specifics (the shared contract is in test_stores_contract.py)."""

from __future__ import annotations

from authproxy.credentials.tokens import Token
from authproxy.stores.base import LockingTokenStore, TokenStore, store_lock
from authproxy.stores.memory import MemoryStore


async def test_tokens_are_kept_as_given() -> None:
    store = MemoryStore()
    token = Token("at", 100.0, refresh_token="rt", obtained_at=50.0)
    await store.save("route:a", token)
    assert await store.load("route:a") is token
    assert store.keys() == ["route:a"]


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
