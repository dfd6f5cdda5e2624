"""Where tokens live between requests and restarts: one `TokenStore` base for every backend.

A store keeps one `Token` per key (`credentials.identity.store_key(route)`). Every store has a
`lock(key)` held while a token for that key is fetched and saved, so only one renewal runs at a
time (the base's lock serialises within this process; the file and Redis stores extend it across
processes, since a rotating refresh token may be spent only once), a `status()` for `/-/status`
and `/-/ready`, and a `close()`. Callers never probe what a store can do.

I/O failures surface as `OSError` (or a subclass) so callers can keep serving from memory when
persistence is briefly unavailable.
"""

from __future__ import annotations

import asyncio
import contextlib
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator

from authproxy.credentials.tokens import Token


class TokenStore(ABC):
    """The contract every store meets (memory, file, redis); tests/stores/test_contract.py checks it."""

    kind = "memory"  # what `status()` reports

    def __init__(self) -> None:
        self._key_locks: dict[str, asyncio.Lock] = {}

    @abstractmethod
    async def load(self, key: str) -> Token | None:
        """The token saved under `key`, or None."""

    @abstractmethod
    async def save(self, key: str, token: Token) -> None:
        """Replace the token under `key` atomically (a reader sees the old or the new one)."""

    @abstractmethod
    async def delete(self, key: str) -> None:
        """Forget `key` (missing keys are fine)."""

    @contextlib.asynccontextmanager
    async def lock(self, key: str) -> AsyncIterator[None]:
        """Held while a token for `key` is fetched and saved; shared stores also lock other processes out."""
        async with self._key_locks.setdefault(key, asyncio.Lock()), self.shared_lock(key):
            yield

    @contextlib.asynccontextmanager
    async def shared_lock(self, key: str) -> AsyncIterator[None]:
        """The cross-process part of `lock` (taken inside the in-process one); none for a private store."""
        yield

    def where(self) -> str:
        """Where the tokens are, for messages (a path, a host:port; never a password)."""
        return "this process's memory"

    def status(self) -> dict[str, object]:
        """For /-/status and /-/ready: the kind and whether the backend is reachable (never a secret)."""
        return {"kind": self.kind, "state": "ok"}

    async def close(self) -> None:  # noqa: B027 - most stores hold no connection
        """Release the store's connections (when the app stops); a no-op for stores without any."""
