"""Whether the Redis store's backend is usable: the state /-/status shows, and one log line per change.

Kept apart from the store so the store's code is about tokens and locks; the store tells `Health`
what each command found (`up()`, `down(reason)`), its monitor waits on `wait_down` between pings.
"""

from __future__ import annotations

import asyncio

import structlog

from authproxy.clock import Clock, wait_event
from authproxy.stores.redis_connect import Reason

log = structlog.get_logger("authproxy.stores")


class Health:
    """Up, down (and why), or not contacted yet; `misconfigured` while the reason is the config's."""

    def __init__(self, clock: Clock, where: str, fallback: bool) -> None:
        self._clock, self._where, self._fallback = clock, where, fallback
        self.up: bool | None = None  # None: not contacted yet
        self.since: float | None = None  # clock.now() of the last change
        self.error: str | None = None
        self.misconfigured = False
        self._down = asyncio.Event()

    def status(self, pending_writes: int) -> dict[str, object]:
        state = "unknown" if self.up is None else "ok" if self.up else "unavailable"
        return {
            "kind": "redis",
            "state": state,
            "since": self.since,
            "error": None if self.up else self.error,
            "pending_writes": pending_writes,
        }

    def mark_down(self, reason: Reason) -> None:
        """A command failed: logged when Redis was up (or the kind of failure changed)."""
        changed = self.misconfigured != reason.misconfigured or (reason.misconfigured and self.error != reason.text)
        self.error, self.misconfigured = reason.text, reason.misconfigured
        if self.up is not False or changed:
            self.up, self.since = False, self._clock.now()
            log.warning(
                "token_store_unavailable",
                address=self._where,
                error=self.error,
                detail="routes wait until this is fixed: refreshing without the store could spend a token twice"
                if reason.misconfigured
                else "serving cached tokens; refreshing without the shared lock until Redis is back"
                if self._fallback
                else "the Redis token store cannot be reached",
            )
        self._down.set()

    def mark_up(self) -> None:
        was_down = self.up is False
        self.up, self.since, self.error, self.misconfigured = True, self._clock.now(), None, False
        if was_down:
            log.info("token_store_reconnected", address=self._where)

    async def wait_down(self, delay: float) -> None:
        """Until `delay` passes or a command finds Redis down."""
        self._down.clear()
        if self.up is False:
            return
        await wait_event(self._clock, self._down, delay)
