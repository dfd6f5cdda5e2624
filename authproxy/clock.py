"""Time, in one place: the only module that reads the clock or sleeps.

Everything time-dependent (expiry, refresh schedules, backoff) takes a `Clock`, so tests
drive time with a fake clock (tests/fakes/clock.py) instead of sleeping.
"""

from __future__ import annotations

import asyncio
import time
from typing import Protocol


class Clock(Protocol):
    def now(self) -> float:
        """Wall-clock seconds since the epoch (token expiry is stored in these)."""

    def monotonic(self) -> float:
        """Seconds on a clock that never goes back (durations)."""

    async def sleep(self, seconds: float) -> None:
        """Wait `seconds`; cancellable."""


async def wait_event(clock: Clock, event: asyncio.Event, timeout: float) -> bool:
    """Until `event` is set (True) or `timeout` seconds pass on `clock` (False)."""
    waiter = asyncio.ensure_future(event.wait())
    timer = asyncio.ensure_future(clock.sleep(timeout))
    try:
        await asyncio.wait([waiter, timer], return_when=asyncio.FIRST_COMPLETED)
    finally:
        waiter.cancel()
        timer.cancel()
    return event.is_set()


class SystemClock:
    """The real clock."""

    def now(self) -> float:
        return time.time()

    def monotonic(self) -> float:
        return time.perf_counter()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds))
