"""`Credential`: one route's token, cached, persisted and renewed; written once for every grant.

At most one token request per credential is in flight; every caller shares its result and waits at
most `max_wait` (on the injected clock). A token known to be expired is never handed out. The
credential's state is explicit (`state.py`); failures are classified once (`failures.FailurePolicy`);
the store is reached only through `sync` (`StoreSync`, or `NoStore` for tokens from the config).
"""

from __future__ import annotations

import asyncio
import random
from collections import Counter

import structlog

from authproxy.clock import Clock
from authproxy.credentials.failures import FailurePolicy, RefusedAfterRenewal, error_code, permanent_error, unavailable
from authproxy.credentials.grants.base import TokenSource
from authproxy.credentials.refresher import Backoff, Refresher, renewal_at
from authproxy.credentials.state import State, StateMachine
from authproxy.credentials.sync import NoStore, StoreSync
from authproxy.credentials.tokens import Token
from authproxy.errors import AuthProxyError, LoginRequired, TokenEndpointError

log = structlog.get_logger("authproxy.credentials")

RESETTABLE = frozenset((State.BACKING_OFF, State.LOGIN_REQUIRED, State.FAILED))  # what a new login clears


class Credential:
    """One route's token: cached, persisted, renewed in the background, never expired."""

    def __init__(
        self,
        name: str,
        source: TokenSource,
        sync: StoreSync | NoStore,
        *,
        clock: Clock,
        max_wait: float = 10.0,
        min_leeway: float = 60.0,
        token_type: str | None = None,
        scope: str | None = None,
        rng: random.Random | None = None,
        backoff: Backoff | None = None,
        parked: AuthProxyError | None = None,
    ) -> None:
        """`parked`: a credential that cannot work (settings empty) starts, and stays, `not_configured`."""
        self.name, self.source, self._sync, self._clock = name, source, sync, clock
        self._max_wait, self._min_leeway, self._token_type = max_wait, min_leeway, token_type
        self._requested = " ".join((scope or "").split()) or None  # what the route asks for (auth.scope)
        self._narrowed_logged: str | None = None
        self._rng = rng if rng is not None else random.Random()
        self.wakeup = asyncio.Event()  # set whenever the token or the failure state changes (the refresher waits on it)
        self._state = StateMachine(clock, State.NOT_CONFIGURED if parked else State.EMPTY)
        self._policy = FailurePolicy(name, clock, backoff or Backoff(), self._rng)
        if parked is not None:
            self._policy.park(parked, parked.code)  # no cool-down: nothing to retry until the config changes
        self._refused = RefusedAfterRenewal(name, clock)
        self._refresher = Refresher(self, clock)
        self._token: Token | None = None
        self._renew_at: float | None = None
        self._inflight: asyncio.Task[Token | AuthProxyError] | None = None
        self._loaded = False
        self._load_lock = asyncio.Lock()
        self._used_refresh: str | None = None  # the refresh token the current request spends
        self._last_refresh_at: float | None = None
        self._last_outcome: str | None = "failed" if parked else None
        self.fetches: Counter[str] = Counter()  # token requests by outcome, for /-/metrics

    @property
    def state(self) -> State:
        return self._state.state

    # -- what the proxy uses ---------------------------------------------------------------------

    def cached(self) -> Token | None:
        """The cached token if it is valid now, without waiting for anything (the hot path's first try)."""
        token = self._token
        return token if token is not None and not token.expired(self._clock.now()) else None

    async def current(self) -> Token:
        """A valid token: the cached one, or the result of the (shared) request."""
        await self._ensure_loaded()
        if self._valid(self._token):
            return self._token  # type: ignore[return-value]
        await self._check_blocked()
        token = self._token  # a login seen in the store may just have replaced it
        return token if self._valid(token) else await self._share_request(token)  # type: ignore[return-value]

    async def refresh(self, stale: Token | None = None) -> Token:
        """Replace `stale` (compare-and-invalidate); `stale=None` is an explicit reset (a new login)."""
        await self._ensure_loaded()
        token = self._token
        if stale is not None and self._valid(token) and token.access_token != stale.access_token:  # type: ignore[union-attr]
            return token  # type: ignore[return-value]
        if stale is None:
            self._reset()
        elif self._refused.holds(stale):
            return stale  # the caller keeps the upstream's 401: no token request per request
        await self._check_blocked()
        return await self._share_request(stale or token)

    def rejected(self, token: Token) -> None:
        """The upstream refused `token` although it was just renewed because of a 401."""
        self._refused.note(token)

    def headers(self, token: Token) -> dict[str, str]:
        """The header that carries `token`; `auth.token_type` wins even over a stored token's type."""
        return {"Authorization": f"{self._token_type or token.token_type} {token.access_token}"}

    # -- life --------------------------------------------------------------------------------------

    def start(self) -> None:
        """Start background renewal (idempotent); a not-configured credential says once what to set."""
        if self.state is State.NOT_CONFIGURED:
            log.warning("route_not_configured", route=self.name, detail=self._policy.parked.message)  # type: ignore[union-attr]
            return
        self._refresher.start()

    async def close(self) -> None:
        await self._refresher.stop()
        # An in-flight request may already have rotated the refresh token upstream: let it finish and
        # save the new one (bounded by the token endpoint's timeout), or the next start needs a new login.
        await self.wait_idle()

    async def wait_idle(self) -> None:
        """Wait for an in-flight token request (if any) to finish; for shutdown and tests."""
        task = self._inflight
        if task is not None:
            await asyncio.gather(asyncio.shield(task), return_exceptions=True)

    def status(self) -> dict[str, object]:
        """For `/-/status`: state and timings, never a token or a secret."""
        now, token, policy = self._clock.now(), self._token, self._policy
        expires_at = token.expires_at if token is not None else None
        return {
            "route": self.name,
            "state": str(self.state),
            "valid": self._valid(token),
            "expires_in": None if expires_at is None else max(0, round(expires_at - now)),
            "expires_at": expires_at,  # epoch seconds; /-/status shows it as ISO 8601 (server/status.py)
            "renew_in": None if self._renew_at is None else max(0, round(self._renew_at - now)),
            "last_refresh_at": self._last_refresh_at,
            "last_outcome": self._last_outcome,
            "last_error_code": policy.last_code,
            "last_error_detail": policy.last_detail,  # the provider's own words, redacted (operators only)
            "failures": policy.failures,
            "retry_in": policy.retry_in(),
            "message": policy.parked.message if policy.parked is not None else None,
            "fetches": dict(self.fetches),
            "scope": {"requested": self._requested, "granted": token.scope if token is not None else None},
        }

    # -- what the refresher uses (refresher.RefreshTarget) -----------------------------------------

    def next_attempt_in(self) -> float | None:
        """Seconds until the next token request is due; None: nothing scheduled (static, or parked)."""
        if self._state.parked:  # only look for a login saved by another process
            return self._sync.poll if self.state is State.LOGIN_REQUIRED else None
        retry_in = self._policy.retry_in()
        if retry_in is not None:
            return retry_in
        if not self._loaded or not self._valid(self._token):
            return 0.0
        return None if self._renew_at is None else max(0.0, self._renew_at - self._clock.now())

    async def renew(self) -> None:
        """Request a token now if one is due; a parked credential only looks for news in the store."""
        await self._ensure_loaded()
        if self._state.parked:
            if self.state is State.LOGIN_REQUIRED:
                await self._adopt_news()
            return
        if self._inflight is None:
            due = self.next_attempt_in()
            if due is None or due > 0:
                return
            self._start_request(self._token)
        await asyncio.shield(self._inflight)  # type: ignore[arg-type]

    # -- internals -------------------------------------------------------------------------------

    def _valid(self, token: Token | None) -> bool:
        return token is not None and not token.expired(self._clock.now())

    def _set_token(self, token: Token) -> None:
        now = self._clock.now()
        self._token = token
        self._check_scope(token)
        renew = renewal_at(token, now, self._min_leeway, self._rng)
        if renew is not None and token.expires_at is not None:  # no hot loop when the answer came late
            renew = max(renew, now + min(1.0, (token.expires_at - now) / 2))
        self._renew_at = renew

    def _reset(self) -> None:
        """Forget failures (a new login, or a token saved elsewhere): no longer parked or backing off."""
        if self.state is State.NOT_CONFIGURED:
            return
        self._policy.clear()
        valid = self._valid(self._token)
        if self.state in RESETTABLE or (self.state is State.EMPTY and valid):
            self._state.move(State.VALID if valid else State.EMPTY)
        self.wakeup.set()

    async def _adopt_news(self) -> bool:
        """A token saved elsewhere (a login in another process) replaces a parked state."""
        news = await self._sync.news(self._token, self._policy.dead_refresh)
        if news is None:
            return False
        self._set_token(news)
        self._reset()
        return True

    async def _ensure_loaded(self) -> None:
        """On first use, take the stored token (a restart reuses a valid token or refresh token)."""
        if self._loaded:
            return
        async with self._load_lock:
            if self._loaded:
                return
            try:
                stored = await self._sync.load()
            except OSError as exc:
                log.warning("token_store_failed", route=self.name, op="load", error=type(exc).__name__)
                stored = None
            if stored is not None:
                self._set_token(stored)
                if self.state is State.EMPTY and self._valid(stored):
                    self._state.move(State.VALID)
            self._loaded = True

    async def _check_blocked(self) -> None:
        """Raise instead of requesting while parked or backing off (a login seen in the store unparks)."""
        if self._inflight is not None:
            return
        if self._state.parked and self.state is not State.NOT_CONFIGURED and await self._adopt_news():
            return
        blocked = self._policy.blocked()
        if blocked is not None:
            raise blocked

    def _start_request(self, stale: Token | None) -> asyncio.Task[Token | AuthProxyError]:
        self._state.move(State.RENEWING)
        task = self._inflight = asyncio.get_running_loop().create_task(
            self._request(stale), name=f"token-request:{self.name}"
        )
        return task

    async def _share_request(self, stale: Token | None) -> Token:
        """Share the in-flight request (starting one if needed); wait at most max_wait."""
        task = self._inflight
        if task is None:
            token = self._token
            if self._valid(token) and (stale is None or token.access_token != stale.access_token):  # type: ignore[union-attr]
                return token  # type: ignore[return-value]
            task = self._start_request(stale)
        timer = asyncio.ensure_future(self._clock.sleep(self._max_wait))
        try:
            await asyncio.wait([task, timer], return_when=asyncio.FIRST_COMPLETED)
        finally:
            timer.cancel()
        if not task.done():
            raise unavailable(self.name, f"the token endpoint did not answer within {self._max_wait:g}s")
        if task.cancelled():
            raise unavailable(self.name, "the token request was cancelled (shutting down)")
        outcome = task.result()
        if isinstance(outcome, AuthProxyError):
            raise self._policy.fresh(outcome)
        if not self._valid(outcome):
            raise unavailable(self.name, "the new token expired before it could be used")
        return outcome

    async def _request(self, stale: Token | None) -> Token | AuthProxyError:
        """The single flight: obtain, persist, record; every failure becomes the outcome's error."""
        try:
            token, how = await self._adopt_or_fetch(stale)
        except TokenEndpointError as exc:
            return self._failed(exc)
        except LoginRequired as exc:
            return self._park(LoginRequired(exc.message, route=self.name), "no_refresh_token")
        except OSError as exc:  # the store broke; try again later like any transient failure
            reason = str(exc.strerror or exc) or type(exc).__name__  # store messages carry no secret
            return self._failed(TokenEndpointError("the token store failed", description=reason))
        else:
            self._succeeded(token, how)
            return token
        finally:
            if self._inflight is asyncio.current_task():
                self._inflight = None
            self.wakeup.set()

    async def _adopt_or_fetch(self, stale: Token | None) -> tuple[Token, str]:
        """Adopt a newer stored token if another process already renewed, else request one and save it."""
        source, sync = self.source, self._sync
        avoid = stale.access_token if stale is not None else None
        async with sync.lock():
            previous = self._token
            stored = await sync.load()
            if stored is not None and self._fresh(stored, avoid):
                return stored, "store"
            if stored is not None and (stored.refresh_token or previous is None):
                previous = stored  # the store wins: it may hold a rotated refresh token
            elif stored is None and sync.in_store:
                previous = None  # it was stored and is gone: a logout, which memory must not undo
            self._used_refresh = spent = source.refresh_token_for(previous)
            try:
                token = await source.fetch(previous)
            except TokenEndpointError as exc:
                if exc.oauth_error != "invalid_grant" or spent is None:
                    raise
                stored = await sync.load()  # did another process rotate the refresh token first?
                if stored is None or not stored.refresh_token or stored.refresh_token == spent:
                    raise
                log.info("refresh_token_rotated_elsewhere", route=self.name)
                if self._fresh(stored, avoid):
                    return stored, "store"
                self._used_refresh = stored.refresh_token
                token = await source.fetch(stored)
            token = sync.stamp(token)
            await sync.save(token)  # before anyone sees the token: a rotated refresh token must not be lost
            return token, "fetched"

    def _fresh(self, stored: Token, avoid: str | None) -> bool:
        """A stored token worth adopting: valid, not the one being replaced, not yet due."""
        if not self._valid(stored) or stored.access_token == avoid:
            return False
        due = renewal_at(stored, self._clock.now(), self._min_leeway)
        return due is None or due > self._clock.now()

    def _succeeded(self, token: Token, how: str) -> None:
        self._set_token(token)
        self._policy.succeeded()
        self._state.move(State.VALID)
        self._last_outcome = "ok"
        self.fetches["ok" if how == "fetched" else "from_store"] += 1
        if how == "fetched":
            self._last_refresh_at = self._clock.now()
        expires_in = None if token.expires_at is None else round(token.expires_at - self._clock.now())
        log.info("token_refreshed", route=self.name, outcome="ok", source=how, expires_in=expires_in)

    def _check_scope(self, token: Token) -> None:
        """Some providers silently drop scopes they will not grant: say so once per grant."""
        if token.scope is None or self._requested is None or token.scope == self._narrowed_logged:
            return
        missing = sorted(set(self._requested.split()) - set(token.scope.split()))
        if missing:
            self._narrowed_logged = token.scope
            log.warning(
                "scope_narrowed",
                route=self.name,
                requested=self._requested,
                granted=token.scope,
                missing=missing,
                detail="the token endpoint granted fewer scopes than auth.scope asks for; requests that need "
                "the missing ones will be refused upstream (check the client's allowed scopes)",
            )

    def _failed(self, exc: TokenEndpointError) -> AuthProxyError:
        permanent = permanent_error(self.name, exc, relogin_hint=self.source.relogin_hint())
        if permanent is not None:
            return self._park(permanent, error_code(exc), exc.status, exc.detail)
        error = self._policy.transient(exc)
        self._state.move(State.BACKING_OFF)
        self._last_outcome = "transient_error"
        self.fetches["transient_error"] += 1
        log.warning(
            "token_fetch_failed",
            route=self.name,
            outcome="transient_error",
            error_code=self._policy.last_code,
            status=exc.status,
            detail=exc.detail,
            failures=self._policy.failures,
            retry_in=round(error.retry_after or 0.0, 3),
        )
        return error

    def _park(
        self, error: AuthProxyError, code: str, status: int | None = None, detail: str | None = None
    ) -> AuthProxyError:
        """Permanent failure: no more requests until a human acts (or, for `failed`, a cool-down)."""
        login = isinstance(error, LoginRequired)
        dead = self._used_refresh if login else None
        self._policy.park(error, code, cool_down=not login, dead_refresh=dead, detail=detail)
        self._state.move(State.LOGIN_REQUIRED if login else State.FAILED)
        self._last_outcome = str(self.state)
        self.fetches[self._last_outcome] += 1
        log.error(
            "token_fetch_failed",
            route=self.name,
            outcome=self._last_outcome,
            error_code=code,
            status=status,
            detail=self._policy.last_detail,
        )
        return error
