"""A credential's view of the token store: its own token, saved before use, and news from elsewhere.

Several processes (workers, replicas, `authproxy login`) may share a store. `StoreSync` loads only
a token this credential's identity obtained (an edited config must not reuse another client's),
saves a new token before anyone sees it (a rotated refresh token exists nowhere else), notices a
logout (a token that was stored and is gone must not come back from memory), and, while the
credential is parked, looks for a login saved by another process. Tokens that come from the config
(static) are never stored: their credential gets `NoStore`.
"""

from __future__ import annotations

import contextlib
from contextlib import AbstractAsyncContextManager
from dataclasses import replace

import structlog

from authproxy.clock import Clock
from authproxy.credentials.tokens import Token
from authproxy.stores.base import TokenStore

log = structlog.get_logger("authproxy.credentials")

STORE_RECHECK = 1.0  # seconds between store re-reads while waiting for a new login
STORE_POLL = 5.0  # while parked in login_required, the refresher looks for a new login this often


class StoreSync:
    """Load, save and re-read one credential's token in the shared store."""

    poll: float | None = STORE_POLL  # how often a credential waiting for a login looks for one

    def __init__(self, name: str, store: TokenStore, key: str, identity: str, clock: Clock) -> None:
        self._name, self._store, self._key, self._identity, self._clock = name, store, key, identity, clock
        self.in_store = False  # the store held (or got) this token: its absence now means a logout
        self._ignored_logged = False
        self._checked: float | None = None

    def lock(self) -> AbstractAsyncContextManager[None]:
        """Held while a token is fetched and saved: one process renews at a time."""
        return self._store.lock(self._key)

    def stamp(self, token: Token) -> Token:
        """The token marked with the identity that obtained it (what `load` checks)."""
        return token if token.identity == self._identity else replace(token, identity=self._identity)

    async def load(self) -> Token | None:
        """The stored token, unless another client, endpoint or scope obtained it (config edited since)."""
        stored = await self._store.load(self._key)
        if stored is None:
            return None
        if stored.identity is None or stored.identity == self._identity:  # None: stored by an older version
            self.in_store = True
            return stored
        if not self._ignored_logged:
            self._ignored_logged = True
            log.warning(
                "stored_token_ignored",
                route=self._name,
                detail="it was obtained with another client_id, token_url, scope or audience; fetching a new one",
            )
        return None

    async def save(self, token: Token) -> None:
        """Before anyone sees the token; a store failure is logged and memory keeps the only copy."""
        try:
            await self._store.save(self._key, token)
            self.in_store = True
        except OSError as exc:
            self.in_store = False
            log.warning("token_store_failed", route=self._name, op="save", error=type(exc).__name__)

    async def news(self, current: Token | None, dead_refresh: str | None) -> Token | None:
        """While parked: a different token saved elsewhere (a login) worth adopting, at most once a second."""
        now = self._clock.monotonic()
        if self._checked is not None and now - self._checked < STORE_RECHECK:
            return None
        self._checked = now
        try:
            stored = await self.load()
        except OSError:
            return None
        if stored is None or stored == current:
            return None
        if (stored.refresh_token and stored.refresh_token != dead_refresh) or not stored.expired(self._clock.now()):
            return stored
        return None


class NoStore:
    """For tokens that come from the config: nothing is loaded, saved or shared."""

    poll: float | None = None
    in_store = False

    def lock(self) -> AbstractAsyncContextManager[None]:
        return contextlib.nullcontext()

    def stamp(self, token: Token) -> Token:
        return token

    async def load(self) -> Token | None:
        return None

    async def save(self, token: Token) -> None:
        return None

    async def news(self, current: Token | None, dead_refresh: str | None) -> Token | None:
        return None
