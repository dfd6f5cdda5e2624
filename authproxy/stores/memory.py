"""The in-process store: tokens survive a config reload but not a restart."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from authproxy.credentials.tokens import Token


class MemoryStore:
    """A dict of tokens plus one `asyncio.Lock` per key (enough within one process)."""

    def __init__(self) -> None:
        self._tokens: dict[str, Token] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    async def load(self, key: str) -> Token | None:
        return self._tokens.get(key)

    async def save(self, key: str, token: Token) -> None:
        self._tokens[key] = token

    async def delete(self, key: str) -> None:
        self._tokens.pop(key, None)

    @contextlib.asynccontextmanager
    async def lock(self, key: str) -> AsyncIterator[None]:
        """Serialise fetches for `key`; the lock is created on first use."""
        lock = self._locks.setdefault(key, asyncio.Lock())
        async with lock:
            yield

    def keys(self) -> list[str]:
        """Stored keys (for tests and `/-/status`; never the tokens)."""
        return sorted(self._tokens)
