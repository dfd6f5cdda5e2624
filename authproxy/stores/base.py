"""Where tokens live between requests and restarts: one `TokenStore` protocol for every backend.

A store keeps one `Token` per key (`credentials.store_key(route)`). Stores shared between
processes (file, redis) also offer `lock(key)` so that only one process refreshes a rotating
refresh token at a time; `store_lock` falls back to no lock for stores without one.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from authproxy.credentials.tokens import Token

if TYPE_CHECKING:
    pass


@runtime_checkable
class TokenStore(Protocol):
    """The contract every store meets (memory, file, redis).

    I/O failures should surface as `OSError` (or a subclass) so callers can keep serving from
    memory when persistence is briefly unavailable.
    """

    async def load(self, key: str) -> Token | None:
        """The token saved under `key`, or None."""

    async def save(self, key: str, token: Token) -> None:
        """Replace the token under `key` atomically (a reader sees the old or the new one)."""

    async def delete(self, key: str) -> None:
        """Forget `key` (missing keys are fine)."""


@runtime_checkable
class LockingTokenStore(TokenStore, Protocol):
    """A store that can serialise refreshes of one key (across processes when shared)."""

    def lock(self, key: str) -> AbstractAsyncContextManager[None]:
        """Held while a token for `key` is fetched and saved."""


def store_lock(store: TokenStore, key: str) -> AbstractAsyncContextManager[None]:
    """`store.lock(key)` when the store has one, else a no-op context manager."""
    if isinstance(store, LockingTokenStore):
        return store.lock(key)
    return _no_lock()


@contextlib.asynccontextmanager
async def _no_lock() -> AsyncIterator[None]:
    yield


@runtime_checkable
class ReportingStore(Protocol):
    """A store whose backend can be unavailable (redis) reports its state."""

    def status(self) -> dict[str, object]: ...


def store_status(store: TokenStore) -> dict[str, object]:
    """For /-/status and /-/ready: the store's kind and whether it is reachable (never a secret)."""
    if isinstance(store, ReportingStore):
        return store.status()
    kind = type(store).__name__.removesuffix("Store").lower()
    return {"kind": kind, "state": "ok"}


async def close_store(store: TokenStore) -> None:
    """Release the store's connections (redis); a no-op for stores without any."""
    close = getattr(store, "aclose", None)
    if close is not None:
        await close()


__all__ = [
    "LockingTokenStore",
    "ReportingStore",
    "TokenStore",
    "close_store",
    "store_lock",
    "store_status",
]
