"""The clock that time-dependent logic takes, so tests drive time with a fake one (tests/fakes/clock.py).

Every schedule a test must control goes through a `Clock`: token expiry and renewal, backoff,
cool-downs, the refused-token hold, browser logins pending, idle upstream connections, the Redis
store's reconnects and locks, worker restarts. Three places read time directly, on purpose:
per-exchange I/O timeouts of the upstream connection and the file store's lock wait run on the
event loop's own clock (they bound real socket and process waits, which no fake clock drives), and
the access log stamps lines with the wall clock.
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
