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

from authproxy.errors import ConfigError
from authproxy.tokens import Token

if TYPE_CHECKING:
    from authproxy.config_schema import Config

# Grants whose refresh token must survive a restart (a rotated one exists nowhere else).
PERSISTENT_GRANTS = frozenset({"authorization_code", "refresh_token"})


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


def needs_persistence(config: Config) -> bool:
    """True when some route keeps a refresh token: `store.kind: auto` then means a file."""
    return any(route.auth.grant in PERSISTENT_GRANTS for route in config.routes.values())


def build_store(config: Config) -> TokenStore:
    """The store `config.store` asks for; `auto` is a file when a refresh token must persist.

    A file that exists but cannot be read (corrupt, wrong key) is a ConfigError naming what to
    fix, raised now rather than on the first request, and the file is left as it is.
    """
    from authproxy.stores.file import FileStore, StoreFileError, default_path
    from authproxy.stores.memory import MemoryStore

    settings = config.store
    kind = settings.kind
    if kind == "auto":
        kind = "file" if needs_persistence(config) else "memory"
    if kind == "memory":
        return MemoryStore()
    if kind == "redis":
        raise ConfigError(
            [("store.kind", "the redis store is not available in this version; use file (shared on one machine)")]
        )
    path = settings.path or default_path()
    try:
        store = FileStore(path, encryption_key=settings.encryption_key, private_dir=settings.path is None)
    except ValueError as exc:
        raise ConfigError([("store.encryption_key", str(exc))]) from None
    try:
        store.verify()
    except StoreFileError as exc:
        raise ConfigError([(f"store.{exc.field}", exc.message)]) from None
    except OSError as exc:
        raise ConfigError(
            [("store.path", f"cannot read {path}: {exc.strerror or exc}; check the path and its permissions")]
        ) from None
    return store


__all__ = ["LockingTokenStore", "TokenStore", "build_store", "needs_persistence", "store_lock"]
