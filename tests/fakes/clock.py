"""A clock that moves only when a test says so."""

from __future__ import annotations

import asyncio
import heapq
import itertools


class FakeClock:
    """A clock that moves only when a test calls `advance`.

    Sleepers wake in deadline order as time passes them; `advance` lets woken tasks run before
    returning, so a test can assert right after it.
    """

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self._now = start
        self._mono = 0.0
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._seq = itertools.count()

    def now(self) -> float:
        return self._now

    def monotonic(self) -> float:
        return self._mono

    async def sleep(self, seconds: float) -> None:
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (self._mono + max(0.0, seconds), next(self._seq), fut))
        await fut

    @property
    def sleepers(self) -> int:
        """How many sleeps are pending (a test can wait until a task has gone to sleep)."""
        return sum(1 for _, _, f in self._sleepers if not f.done())

    async def advance(self, seconds: float, *, settle: int = 20) -> None:
        """Move time forward, waking every sleeper whose deadline is passed, in order."""
        target = self._mono + seconds
        while self._sleepers and self._sleepers[0][0] <= target:
            deadline, _, fut = heapq.heappop(self._sleepers)
            step = deadline - self._mono
            self._mono += step
            self._now += step
            if not fut.done():
                fut.set_result(None)
            await _settle(settle)
        step = target - self._mono
        self._mono += step
        self._now += step
        await _settle(settle)


async def _settle(rounds: int) -> None:
    """Let ready tasks run for a few loop iterations."""
    for _ in range(rounds):
        await asyncio.sleep(0)
