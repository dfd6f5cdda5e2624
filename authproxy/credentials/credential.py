"""`Credential`: the cache, the store and the single flight, written once for every grant.

At most one token request per credential is in flight; every caller shares its result and
waits at most `max_wait` (on the injected clock). A token known to be expired is never handed
out. Failures are classified once: transient ones back off exponentially (requests during the
backoff get `TokenUnavailable` with the time left), permanent ones park the credential in
`failed` or `login_required` until the store shows a new login or `refresh()` is called.
"""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from dataclasses import dataclass, replace

import aiohttp
import structlog

from authproxy.clock import Clock
from authproxy.config.schema import AuthConfig
from authproxy.credentials.failures import (
    RefusedAfterRenewal,
    error_code,
    permanent_error,
    transient_error,
    unavailable,
)
from authproxy.credentials.grants.base import TokenSource
from authproxy.credentials.grants.refresh_token import RefreshTokenSource
from authproxy.credentials.identity import belongs_to, store_key, token_identity
from authproxy.credentials.refresher import Backoff, Refresher, renewal_at
from authproxy.credentials.tokens import Token
from authproxy.errors import AuthProxyError, CredentialFailed, LoginRequired, TokenEndpointError, TokenUnavailable
from authproxy.stores.base import TokenStore, store_lock

log = structlog.get_logger("authproxy.credentials")

STORE_RECHECK = 1.0  # seconds between store re-reads while waiting for a new login
STORE_POLL = 5.0  # while parked in login_required, the refresher looks for a new login this often


@dataclass(frozen=True, slots=True)
class _Outcome:
    token: Token | None = None
    error: AuthProxyError | None = None


class Credential:
    """One route's token: cached, persisted, renewed in the background, never expired."""

    def __init__(
        self,
        name: str,
        source: TokenSource,
        *,
        http: aiohttp.ClientSession,
        store: TokenStore,
        clock: Clock,
        auth: AuthConfig,
        rng: random.Random | None = None,
        backoff: Backoff | None = None,
    ) -> None:
        self.name = name
        self.source = source
        self.wakeup = asyncio.Event()
        self._http, self._store, self._clock = http, store, clock
        self._key, self._identity = store_key(name), token_identity(auth)
        self._max_wait, self._min_leeway, self._token_type = auth.max_wait, auth.min_leeway, auth.token_type
        self._rng = rng if rng is not None else random.Random()
        self._backoff = backoff or Backoff()
        self._refresher = Refresher(self, clock)
        self._load_lock = asyncio.Lock()
        self._loaded = not source.persist
        self._token: Token | None = None
        self._renew_at: float | None = None
        self._inflight: asyncio.Task[_Outcome] | None = None
        self._failures = 0
        self._ignored_logged = False
        self._in_store = False  # the store held (or got) this credential's token: its absence means a logout
        self._refused = RefusedAfterRenewal(name, clock)
        self._retry_at: float | None = None  # monotonic; no fetch before (None: no backoff)
        self._blocked: AuthProxyError | None = None  # CredentialFailed | LoginRequired
        self._dead_refresh: str | None = None
        self._used_refresh: str | None = None
        self._store_checked: float | None = None
        self._last_refresh_at: float | None = None
        self._last_outcome: str | None = None
        self._last_error_code: str | None = None
        self.fetches: Counter[str] = Counter()  # token requests by outcome, for /-/metrics

    # -- the interface the proxy uses ------------------------------------------------------------

    async def current(self) -> Token:
        """A valid token: the cached one, or the result of the (shared) fetch."""
        await self._ensure_loaded()
        if self._valid(self._token):
            return self._token  # type: ignore[return-value]
        await self._check_blocked()
        token = self._token  # a login seen in the store may just have replaced it
        return token if self._valid(token) else await self._join(token)  # type: ignore[return-value]

    async def refresh(self, stale: Token | None = None) -> Token:
        """Replace `stale` (compare-and-invalidate); `stale=None` is an explicit reset (new login)."""
        await self._ensure_loaded()
        token = self._token
        if stale is not None and self._valid(token) and token.access_token != stale.access_token:  # type: ignore[union-attr]
            return token  # type: ignore[return-value]
        if stale is None:
            self._clear_failures()
        else:
            if self._refused.holds(stale):
                return stale  # the caller keeps the upstream's 401: no token request per request
            await self._check_blocked()
        return await self._join(stale or token)

    def rejected(self, token: Token) -> None:
        """The upstream refused `token` although it was just renewed because of a 401."""
        self._refused.note(token)

    def headers(self, token: Token) -> dict[str, str]:
        """The header that carries `token`; `auth.token_type` wins even over a stored token's type."""
        return {"Authorization": f"{self._token_type or token.token_type} {token.access_token}"}

    def start(self) -> None:
        """Start background renewal (idempotent); a failing first fetch only logs."""
        self._refresher.start()

    async def close(self) -> None:
        await self._refresher.stop()
        task = self._inflight
        if task is not None and not task.done():
            # It may already have rotated the refresh token upstream: let it finish and save the new one
            # (bounded by the token endpoint's timeout), or the next start would need a new login.
            await asyncio.gather(asyncio.shield(task), return_exceptions=True)

    async def wait_idle(self) -> None:
        """Wait for an in-flight fetch (if any) to finish; for shutdown and tests."""
        task = self._inflight
        if task is not None:
            await asyncio.gather(asyncio.shield(task), return_exceptions=True)

    def status(self) -> dict[str, object]:
        """For `/-/status`: state and timings, never a token or a secret."""
        now, token = self._clock.now(), self._token
        if self._inflight is not None:
            state = "refreshing"
        elif self._blocked is not None:
            state = "login_required" if isinstance(self._blocked, LoginRequired) else "failed"
        elif not self._valid(token):
            state = "empty"
        elif self._failures or (self._renew_at is not None and now >= self._renew_at):
            state = "expiring"
        else:
            state = "valid"
        expires_at = token.expires_at if token is not None else None
        return {
            "route": self.name,
            "state": state,
            "valid": self._valid(token),
            "expires_in": None if expires_at is None else max(0, round(expires_at - now)),
            "renew_in": None if self._renew_at is None else max(0, round(self._renew_at - now)),
            "last_refresh_at": self._last_refresh_at,
            "last_outcome": self._last_outcome,
            "last_error_code": self._last_error_code,
            "failures": self._failures,
            "retry_in": self._retry_in(),
            "message": self._blocked.message if self._blocked is not None else None,
            "fetches": dict(self.fetches),
        }

    # -- what the refresher uses -----------------------------------------------------------------

    def next_attempt_in(self) -> float | None:
        if self._blocked is not None:  # parked: only look for a login saved by another process
            return STORE_POLL if isinstance(self._blocked, LoginRequired) and self.source.persist else None
        if self._retry_at is not None:
            return max(0.0, self._retry_at - self._clock.monotonic())
        if not self._loaded or not self._valid(self._token):
            return 0.0
        return None if self._renew_at is None else max(0.0, self._renew_at - self._clock.now())

    async def renew(self) -> None:
        await self._ensure_loaded()
        if self._blocked is not None:  # parked: only a new login in the store unparks it
            if isinstance(self._blocked, LoginRequired) and await self._store_has_news():
                self._clear_failures()
            return
        if self._inflight is None:
            due = self.next_attempt_in()
            if due is None or due > 0:
                return
            self._inflight = asyncio.get_running_loop().create_task(self._fetch(self._token))
        await asyncio.shield(self._inflight)

    # -- internals -------------------------------------------------------------------------------

    def _valid(self, token: Token | None) -> bool:
        return token is not None and not token.expired(self._clock.now())

    def _retry_in(self) -> float | None:
        if self._retry_at is None:
            return None
        return max(0.0, self._retry_at - self._clock.monotonic())

    def _set_token(self, token: Token) -> None:
        now = self._clock.now()
        self._token = token
        renew = renewal_at(token, now, self._min_leeway, self._rng)
        if renew is not None and token.expires_at is not None:  # no hot loop when the answer came late
            renew = max(renew, now + min(1.0, (token.expires_at - now) / 2))
        self._renew_at = renew

    def _clear_failures(self) -> None:
        self._failures, self._retry_at, self._blocked, self._dead_refresh = 0, None, None, None
        self.wakeup.set()

    async def _ensure_loaded(self) -> None:
        """On first use, take the stored token (a restart reuses a valid token/refresh token)."""
        if self._loaded:
            return
        async with self._load_lock:
            if self._loaded:
                return
            try:
                stored = await self._load_stored()
            except OSError as exc:
                log.warning("token_store_failed", route=self.name, op="load", error=type(exc).__name__)
                stored = None
            if stored is not None:
                self._set_token(stored)
            self._loaded = True

    async def _check_blocked(self) -> None:
        """Raise instead of fetching while parked (permanent failure) or backing off."""
        if self._inflight is not None:
            return
        if self._blocked is not None:
            if await self._store_has_news():
                self._clear_failures()
                return
            if isinstance(self._blocked, CredentialFailed) and self._retry_in() == 0.0:
                return  # cool-down over: one lazy retry, no hot loop
            raise self._copy(self._blocked)
        retry_in = self._retry_in()
        if retry_in:
            reason = f"the token endpoint is failing ({self._last_error_code}); retrying in {retry_in:.0f}s"
            raise unavailable(self.name, reason, retry_in)

    async def _store_has_news(self) -> bool:
        """While parked: has a login (maybe in another process) stored a different token?"""
        mono = self._clock.monotonic()
        if not self.source.persist or (self._store_checked is not None and mono - self._store_checked < STORE_RECHECK):
            return False
        self._store_checked = mono
        try:
            stored = await self._load_stored()
        except OSError:
            return False
        if stored is None or stored == self._token:
            return False
        if stored.refresh_token and stored.refresh_token != self._dead_refresh:
            self._set_token(stored)
            return True
        if self._valid(stored):
            self._set_token(stored)
            return True
        return False

    async def _join(self, stale: Token | None) -> Token:
        """Share the in-flight fetch (starting one if needed); wait at most max_wait."""
        task = self._inflight
        if task is None:
            token = self._token
            if self._valid(token) and (stale is None or token.access_token != stale.access_token):  # type: ignore[union-attr]
                return token  # type: ignore[return-value]
            task = self._inflight = asyncio.get_running_loop().create_task(
                self._fetch(stale), name=f"token-fetch:{self.name}"
            )
        timer = asyncio.ensure_future(self._clock.sleep(self._max_wait))
        try:
            await asyncio.wait([task, timer], return_when=asyncio.FIRST_COMPLETED)
        finally:
            timer.cancel()
        if not task.done():
            raise unavailable(self.name, f"the token endpoint did not answer within {self._max_wait:g}s")
        if task.cancelled():
            raise unavailable(self.name, "the token fetch was cancelled (shutting down)")
        outcome = task.result()
        if outcome.error is not None:
            raise self._copy(outcome.error)
        if not self._valid(outcome.token):
            raise unavailable(self.name, "the new token expired before it could be used")
        return outcome.token  # type: ignore[return-value]

    def _copy(self, error: AuthProxyError) -> AuthProxyError:
        """A fresh exception per waiter (one shared instance would share its traceback)."""
        retry_after = self._retry_in() if isinstance(error, TokenUnavailable) else error.retry_after
        return type(error)(error.message, route=self.name, retry_after=retry_after)

    async def _fetch(self, stale: Token | None) -> _Outcome:
        """The single flight: obtain, persist, record; turns every endpoint failure into an outcome."""
        try:
            token, how = await self._obtain(stale)
        except TokenEndpointError as exc:
            return _Outcome(error=self._failed(exc))
        except LoginRequired as exc:
            return _Outcome(error=self._park(LoginRequired(exc.message, route=self.name), "no_refresh_token"))
        except OSError as exc:  # the store broke; try again later like any transient failure
            return _Outcome(error=self._failed(TokenEndpointError(f"token store failed ({type(exc).__name__})")))
        else:
            self._succeeded(token, how)
            return _Outcome(token=token)
        finally:
            if self._inflight is asyncio.current_task():
                self._inflight = None
            self.wakeup.set()

    async def _obtain(self, stale: Token | None) -> tuple[Token, str]:
        """Adopt a newer stored token if another process already renewed, else fetch and save."""
        source = self.source
        avoid = stale.access_token if stale is not None else None
        async with store_lock(self._store, self._key):
            previous = self._token
            if source.persist:
                stored = await self._load_stored()
                if stored is not None and self._fresh(stored, avoid):
                    return stored, "store"
                if stored is not None and (stored.refresh_token or previous is None):
                    previous = stored  # the store wins: it may hold a rotated refresh token
                elif stored is None and self._in_store:
                    previous = None  # it was stored and is gone: a logout, which memory must not undo
            self._used_refresh = source.refresh_token_for(previous)
            try:
                token = await source.fetch(self._http, previous)
            except TokenEndpointError as exc:
                if exc.oauth_error != "invalid_grant" or not source.uses_refresh_token or not source.persist:
                    raise
                stored = await self._load_stored()
                if stored is None or not stored.refresh_token or stored.refresh_token == self._used_refresh:
                    raise
                log.info("refresh_token_rotated_elsewhere", route=self.name)
                if self._fresh(stored, avoid):
                    return stored, "store"
                self._used_refresh = stored.refresh_token
                token = await source.fetch(self._http, stored)
            token = replace(token, identity=self._identity)
            if source.persist:  # before anyone sees the token: a rotated refresh token must not be lost
                try:
                    await self._store.save(self._key, token)
                    self._in_store = True
                except OSError as exc:
                    self._in_store = False  # memory holds the only copy of a rotated refresh token now
                    log.warning("token_store_failed", route=self.name, op="save", error=type(exc).__name__)
            return token, "fetched"

    async def _load_stored(self) -> Token | None:
        """The stored token, unless another client, endpoint or scope obtained it (config edited since)."""
        stored = await self._store.load(self._key)
        if stored is None:
            return None
        if belongs_to(stored, self._identity):
            self._in_store = True
            return stored
        if not self._ignored_logged:
            self._ignored_logged = True
            log.warning(
                "stored_token_ignored",
                route=self.name,
                detail="it was obtained with another client_id, token_url, scope or audience; fetching a new one",
            )
        return None

    def _fresh(self, stored: Token, avoid: str | None) -> bool:
        """A stored token worth adopting: valid, not the one being replaced, not yet due."""
        if not self._valid(stored) or stored.access_token == avoid:
            return False
        due = renewal_at(stored, self._clock.now(), self._min_leeway)
        return due is None or due > self._clock.now()

    def _succeeded(self, token: Token, how: str) -> None:
        self._set_token(token)
        self._failures, self._retry_at, self._blocked, self._dead_refresh = 0, None, None, None
        self._last_outcome, self._last_error_code = "ok", None
        self.fetches["ok" if how == "fetched" else "from_store"] += 1
        if how == "fetched":
            self._last_refresh_at = self._clock.now()
        expires_in = None if token.expires_at is None else round(token.expires_at - self._clock.now())
        log.info("token_refreshed", route=self.name, outcome="ok", source=how, expires_in=expires_in)

    def _failed(self, exc: TokenEndpointError) -> AuthProxyError:
        code = self._last_error_code = error_code(exc)
        source = self.source
        hint = source.relogin_hint() if isinstance(source, RefreshTokenSource) else None
        permanent = permanent_error(self.name, exc, relogin_hint=hint)
        if isinstance(permanent, LoginRequired):
            self._dead_refresh = self._used_refresh
        elif permanent is not None:
            self._retry_at = self._clock.monotonic() + self._backoff.cap  # cool-down before a lazy retry
        if permanent is not None:
            return self._park(permanent, code, exc.status)
        self._blocked = None
        self._failures += 1
        delay = self._backoff.delay(self._failures, self._rng)
        self._retry_at = self._clock.monotonic() + delay
        self._last_outcome = "transient_error"
        self.fetches["transient_error"] += 1
        log.warning(
            "token_fetch_failed",
            route=self.name,
            outcome="transient_error",
            error_code=code,
            status=exc.status,
            detail=exc.message,
            failures=self._failures,
            retry_in=round(delay, 3),
        )
        return transient_error(self.name, exc, delay)

    def _park(self, error: AuthProxyError, code: str, status: int | None = None) -> AuthProxyError:
        """Permanent failure: stop fetching until a human acts (or, for `failed`, a cool-down)."""
        self._blocked = error
        self._failures = 0
        if isinstance(error, LoginRequired):
            self._retry_at = None
        self._last_outcome = "login_required" if isinstance(error, LoginRequired) else "failed"
        self.fetches[self._last_outcome] += 1
        self._last_error_code = code
        log.error(
            "token_fetch_failed",
            route=self.name,
            outcome=self._last_outcome,
            error_code=code,
            status=status,
            detail=error.message,
        )
        return error
