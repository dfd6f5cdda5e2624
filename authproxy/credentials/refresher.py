"""Background renewal: one task per credential renews its token before it expires.

The schedule (when to renew, how long to back off) is pure arithmetic on the credential's
state, kept here so it can be tested on its own; `Credential` consults it for lazy retries
too. Randomness comes from an injected `random.Random`, so tests are deterministic.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from dataclasses import dataclass
from typing import Protocol

import structlog

from authproxy.clock import Clock
from authproxy.credentials.tokens import Token

log = structlog.get_logger("authproxy.credentials")

RENEW_JITTER = 0.1  # renew up to 10 % of the leeway later, so many proxies don't renew in lockstep
CRASH_PAUSE = 5.0  # after an unexpected error in the loop, don't spin


@dataclass(frozen=True, slots=True)
class Backoff:
    """Exponential backoff after failed fetches: initial, times factor, capped; jitter shortens."""

    initial: float = 1.0
    cap: float = 300.0
    factor: float = 2.0
    jitter: float = 0.2

    def base(self, failures: int) -> float:
        """The un-jittered delay after `failures` consecutive failures (1, 2, 4, ... cap)."""
        return min(self.cap, self.initial * self.factor ** min(max(0, failures - 1), 64))

    def delay(self, failures: int, rng: random.Random) -> float:
        """`base` shortened by up to `jitter` (never longer, so the cap holds)."""
        return self.base(failures) * (1.0 - self.jitter * rng.random())


def leeway(lifetime: float, min_leeway: float) -> float:
    """max(min_leeway, 10 % of the lifetime), but never more than half of it (6 s → 3 s)."""
    return min(max(min_leeway, 0.1 * lifetime), lifetime / 2)


def renewal_at(token: Token, now: float, min_leeway: float, rng: random.Random | None = None) -> float | None:
    """Epoch time at which `token` should be renewed; None for tokens that never expire."""
    if token.expires_at is None:
        return None
    start = token.obtained_at if token.obtained_at is not None else now
    margin = leeway(max(0.0, token.expires_at - start), min_leeway)
    if rng is not None:
        margin *= 1.0 - RENEW_JITTER * rng.random()
    return token.expires_at - margin


class RefreshTarget(Protocol):
    """What the refresher needs from a credential."""

    name: str
    wakeup: asyncio.Event  # set whenever the token or the failure state changes

    def next_attempt_in(self) -> float | None:
        """Seconds until the next fetch is due; None: nothing scheduled (static, or needs a human)."""

    async def renew(self) -> None:
        """Fetch now unless no longer due; records the outcome, never raises for endpoint errors."""


class Refresher:
    """Sleeps (on the injected clock) until the credential is due, renews, repeats."""

    def __init__(self, target: RefreshTarget, clock: Clock) -> None:
        self._target = target
        self._clock = clock
        self._task: asyncio.Task[None] | None = None

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def start(self) -> None:
        """Start the task (idempotent); needs a running event loop."""
        if not self.running:
            self._task = asyncio.get_running_loop().create_task(self._run(), name=f"refresher:{self._target.name}")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _run(self) -> None:
        while True:
            try:
                await self._until_due()
                await self._target.renew()
            except Exception:  # background-task guard: log, pause, keep going
                log.exception("refresher_error", route=self._target.name)
                await self._clock.sleep(CRASH_PAUSE)

    async def _until_due(self) -> None:
        while True:
            self._target.wakeup.clear()
            delay = self._target.next_attempt_in()
            if delay is not None and delay <= 0:
                return
            if await self._wait(delay):
                return

    async def _wait(self, delay: float | None) -> bool:
        """Wait for `delay` seconds or a wakeup, whichever is first; True if the time ran out."""
        woken = asyncio.ensure_future(self._target.wakeup.wait())
        timer = asyncio.ensure_future(self._clock.sleep(delay)) if delay is not None else None
        try:
            done, _ = await asyncio.wait(
                [f for f in (woken, timer) if f is not None], return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            woken.cancel()
            if timer is not None:
                timer.cancel()
        return timer is not None and timer in done and woken not in done
