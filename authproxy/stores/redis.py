"""The Redis store: tokens shared by every proxy process that points at the same Redis.

`{prefix}token:{key}` holds a token as JSON. `{prefix}lock:{key}` is the refresh lock: SET NX PX
with a random owner value, extended by its holder while it works, released (compare-and-delete
in Lua) only by its owner, and expiring `lock_ttl` after a holder dies. Waiters poll it every
LOCK_POLL seconds: a refresh happens about once per token lifetime, so polling costs nothing and,
unlike pub/sub, cannot miss a release. After the wait the credential re-reads the store and adopts
the token the holder saved, so a rotating refresh token is used once.

With `encryption_key` each token's value is Fernet-encrypted, all but its `obtained_at`, which the
write-back script compares inside Redis (the format, and what happens to an entry stored before the
key was set: `redis_format`).

When Redis is unavailable, a store built with `fallback=True` (a serving proxy) keeps working from
this process's own copies: loads return the last token it saw, saves are kept and written back when
Redis returns (unless Redis holds a newer one), and the lock is only the in-process one, with a
warning, because two processes may then refresh at once. A monitor task pings Redis and reconnects
with backoff; `status()` feeds /-/ready and /-/status. Without fallback (CLI commands) every
failure raises `StoreUnavailable`. Log lines name host:port, never the URL (it may hold a password).

Sentinel and Cluster (`redis_connect`): the same commands go to the master of the moment. In a
cluster the names carry a hash tag, `{prefix}token:{<key>}` and `{prefix}lock:{<key>}`, so one
credential's entry and lock share a slot (every script touches one key; a future multi-key one
would stay in the slot); one server and Sentinel keep the untagged names, so existing entries stay
readable. With Sentinel a lock and a save wait (up to REPLICA_WAIT_MS) for one replica to
acknowledge them (WAIT 1): what a replica holds survives a failover to it. What no replica got yet
can be lost with a master that dies: the lock then at worst lets a second process refresh too (as
in an outage), and a lost entry is fetched again; a token is never served for another identity or
past its expiry, since the credential checks both.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import re
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import structlog

from authproxy.clock import Clock, SystemClock, wait_event
from authproxy.config.redis_url import parse_redis_url
from authproxy.credentials.tokens import Token
from authproxy.stores.base import TokenStore
from authproxy.stores.crypto import make_cipher
from authproxy.stores.redis_connect import CONNECT_TIMEOUT, Connection, Reason, Redis, blocking_client, errors
from authproxy.stores.redis_format import REPLACE_IF, WRITE_BACK, UnreadableEntry, decode, encode
from authproxy.stores.redis_health import Health

log = structlog.get_logger("authproxy.stores")

T = TypeVar("T")
INSTALL_HINT = "install the redis extra: pip install 'authproxy[redis]'"
LOCK_POLL = 0.05  # seconds between attempts to take a lock another process holds
HEALTH_INTERVAL = 2.0  # seconds between pings while Redis is up (so /-/status notices an outage)
RECONNECT_INITIAL, RECONNECT_CAP = 0.1, 5.0  # reconnect backoff while Redis is down

# KEYS[1] lock key; ARGV[1] owner [, ARGV[2] ttl ms]: only the owner may release or extend.
RELEASE = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end return 0"
EXTEND = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('pexpire', KEYS[1], ARGV[2]) end return 0"


class StoreUnavailable(OSError):
    """Redis could not be reached or failed a command; never carries the URL.

    `misconfigured`: the config names something that is not there (a master no sentinel knows, a
    cluster that is one server): even a serving store does not stand in for Redis then.
    """

    def __init__(self, message: str, misconfigured: bool = False) -> None:
        super().__init__(message)
        self.misconfigured = misconfigured


class RedisStore(TokenStore):
    """Tokens in Redis, a cross-process refresh lock, and a local fallback during outages."""

    kind = "redis"

    def __init__(
        self,
        url: str,
        *,
        key_prefix: str = "authproxy:",
        sentinel_master: str | None = None,
        sentinel_password: str | None = None,
        cluster: bool = False,
        lock_ttl: float = 10.0,
        fallback: bool = False,
        encryption_key: str | None = None,
        clock: Clock | None = None,
        rng: random.Random | None = None,
    ) -> None:
        if Redis is None:
            raise ValueError(f"the redis store needs the redis package; {INSTALL_HINT}")
        super().__init__()
        self._target = parse_redis_url(url, sentinel_master=sentinel_master, cluster=cluster)  # ValueError: why
        self._sentinel_password = sentinel_password
        self._tagged = self._target.mode == "cluster"  # hash tags keep a credential's keys in one slot
        self._url, self.prefix, self.lock_ttl, self._fallback = url, key_prefix, lock_ttl, fallback
        self._cipher = make_cipher(encryption_key) if encryption_key else None  # ValueError: what to fix
        self._unreadable: set[str] = set()  # keys whose unreadable entry was logged (once each)
        self._clock = clock or SystemClock()
        self._rng = rng or random.Random()
        self._connection: Connection | None = None
        self._scripts: dict[str, Any] = {}
        self._local: dict[str, Token | None] = {}  # what this process last saw or saved, per key
        self._dirty: set[str] = set()  # saved while Redis was down: write back when it returns
        self._health = Health(self._clock, self.where().removeprefix("Redis at "), fallback)
        self._monitor: asyncio.Task[None] | None = None

    def where(self) -> str:
        target = self._target
        return f"Redis at {target.address()}" if target.mode == "plain" else target.where()

    def __repr__(self) -> str:
        shown = self._target.address() if self._target.mode == "plain" else self._target.where()
        return f"RedisStore({shown!r}, prefix={self.prefix!r}, encrypted={self._cipher is not None})"

    # -- TokenStore --------------------------------------------------------------------------------

    async def load(self, key: str) -> Token | None:
        try:
            raw = await self._call(lambda r: r.get(self._token_key(key)))
        except StoreUnavailable as exc:
            if not self._fallback or exc.misconfigured:
                raise
            return self._local.get(key)
        token = None if raw is None else await self._decode(key, raw)
        self._local[key] = token
        return token

    async def save(self, key: str, token: Token) -> None:
        self._local[key] = token
        try:
            await self._call(lambda r: r.set(self._token_key(key), encode(key, token, self._cipher)))
            await self._replicated("save", key)
        except StoreUnavailable as exc:
            if not self._fallback or exc.misconfigured:
                raise
            self._dirty.add(key)
            log.warning(
                "token_store_unavailable",
                op="save",
                key=key,
                detail="kept in this process; written to Redis when it is back",
            )
            return
        self._dirty.discard(key)

    async def delete(self, key: str) -> None:
        """Raises StoreUnavailable even with fallback: a logout must not seem to succeed."""
        await self._call(lambda r: r.delete(self._token_key(key)), fallback=False)
        self._local.pop(key, None)
        self._dirty.discard(key)

    @contextlib.asynccontextmanager
    async def shared_lock(self, key: str) -> AsyncIterator[None]:
        """The Redis lock for `key`, so a renewal in any process on this Redis waits for one in another."""
        owner = await self._acquire(key)
        done = asyncio.Event()
        keeper = None if owner is None else asyncio.ensure_future(self._keep(key, owner, done))
        try:
            yield
        finally:
            if keeper is not None:
                # Stopped, not cancelled: cancelling redis-py in the middle of a command can leave
                # its connection unusable (seen here as a RELEASE that never returned).
                done.set()
                await asyncio.gather(keeper, return_exceptions=True)
                with contextlib.suppress(StoreUnavailable):  # it expires on its own
                    await self._call(lambda _r: self._script(RELEASE)(keys=[self._lock_key(key)], args=[owner]))

    # -- extras ------------------------------------------------------------------------------------

    def keys(self) -> list[str]:
        """Stored keys, never the tokens (tests and diagnostics: a blocking call, not for the request path)."""
        pattern = re.sub(r"([*?\[\]\\])", r"\\\1", self.prefix) + "token:*"
        start, end = len(self.prefix + "token:") + self._tagged, -1 if self._tagged else None
        with blocking_client(self._target, self._url, self._sentinel_password) as client:
            return sorted(name.decode()[start:end] for name in client.scan_iter(match=pattern))

    def status(self) -> dict[str, object]:
        """For /-/ready and /-/status: reachability only, never the URL, a key or a token."""
        self._ensure_monitor()
        return self._health.status(len(self._dirty))

    async def close(self) -> None:
        monitor, self._monitor = self._monitor, None
        if monitor is not None:
            monitor.cancel()  # bounded: shutdown must not hang on a redis-py call that ignores it
            await asyncio.wait({monitor}, timeout=CONNECT_TIMEOUT)
        connection, self._connection = self._connection, None
        if connection is not None:
            # Bounded: the monitor may have been cancelled mid-command, and shutdown must not hang on it.
            with contextlib.suppress(*errors()):  # TimeoutError is an OSError
                async with asyncio.timeout(CONNECT_TIMEOUT):
                    await connection.aclose()

    # -- internals ---------------------------------------------------------------------------------

    def _token_key(self, key: str) -> str:
        return f"{self.prefix}token:{{{key}}}" if self._tagged else f"{self.prefix}token:{key}"

    def _lock_key(self, key: str) -> str:
        return f"{self.prefix}lock:{{{key}}}" if self._tagged else f"{self.prefix}lock:{key}"

    async def _decode(self, key: str, raw: bytes) -> Token:
        """The token in `raw`; an entry stored before encryption was configured is encrypted in place."""
        try:
            token, plain = decode(key, raw, self._cipher, self._token_key(key))
        except UnreadableEntry as exc:
            if key not in self._unreadable:  # the credential logs only the error's type
                self._unreadable.add(key)
                log.error("token_store_entry_unreadable", key=key, detail=str(exc))
            raise
        if plain and self._cipher is not None:
            sealed = encode(key, token, self._cipher)
            with contextlib.suppress(StoreUnavailable):  # else the next save encrypts it
                replaced = await self._call(
                    lambda _r: self._script(REPLACE_IF)(keys=[self._token_key(key)], args=[raw, sealed])
                )
                log.warning(
                    "token_store_entry_encrypted",
                    key=key,
                    replaced=bool(replaced),
                    detail="it was stored unencrypted, before store.encryption_key was set",
                )
        return token

    def _redis(self) -> Any:
        return self._link().client

    def _link(self) -> Connection:
        if self._connection is None:  # created inside the running loop, on first use
            self._connection = Connection(self._target, self._url, self._sentinel_password)
        return self._connection

    async def _replicated(self, op: str, key: str) -> None:
        """Sentinel: wait for one replica to hold the write (see the module docstring); a warning if none did."""
        try:
            acked = await self._call(lambda _r: self._link().replicated())
        except StoreUnavailable:  # the write itself succeeded; whether it reached a replica is unknown
            acked = 0
        if acked == 0:
            log.warning(
                "token_store_not_replicated",
                op=op,
                key=key,
                detail="no replica acknowledged it in time: a failover now could lose it (at worst a second refresh)",
            )

    def _script(self, source: str) -> Any:
        script = self._scripts.get(source)
        if script is None:
            script = self._scripts[source] = self._redis().register_script(source)
        return script

    async def _call(self, command: Callable[[Any], Awaitable[T]], *, fallback: bool | None = None) -> T:
        """Run one command; StoreUnavailable on failure (at once, without I/O, while known to be down)."""
        self._ensure_monitor()
        health = self._health
        if (self._fallback if fallback is None else fallback) and health.up is False:
            raise StoreUnavailable(f"{self.where()} is unavailable ({health.error})", health.misconfigured)
        try:
            result = await command(self._redis())
        except errors() as exc:
            reason = await self._explain(exc)
            raise StoreUnavailable(f"{self.where()} failed: {reason.text}", reason.misconfigured) from None
        if health.up is None:
            health.mark_up()
        return result

    async def _explain(self, exc: BaseException) -> Reason:
        """Why, for status and logs (asks the sentinels when discovery failed); marks Redis down."""
        try:
            reason = await self._link().explain(exc)
        except errors() as again:  # the diagnosis itself failed: the plain fact will do
            reason = Reason(type(again).__name__)
        self._health.mark_down(reason)
        return reason

    def _ensure_monitor(self) -> None:
        """Start the ping/reconnect task once a loop runs (only a long-lived, serving store has one)."""
        if not self._fallback or (self._monitor is not None and not self._monitor.done()):
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        self._monitor = loop.create_task(self._watch(), name="redis-store-monitor")

    async def _watch(self) -> None:
        failures = 0
        while True:
            try:
                if self._health.up is not False:
                    await self._health.wait_down(HEALTH_INTERVAL)
                else:
                    failures += 1
                    delay = min(RECONNECT_CAP, RECONNECT_INITIAL * 2 ** min(failures - 1, 16))
                    await self._clock.sleep(delay * (1.0 - 0.2 * self._rng.random()))
                await self._probe()
                if self._health.up:
                    failures = 0
            except asyncio.CancelledError:
                raise
            except Exception:  # background-task guard: log, pause, keep going
                log.exception("token_store_monitor_error")
                await self._clock.sleep(RECONNECT_CAP)

    async def _probe(self) -> None:
        """PING; after an outage, write back what was saved meanwhile before trusting Redis again."""
        try:
            await self._redis().ping()
            for key in sorted(self._dirty):
                token = self._local.get(key)
                if token is not None:
                    written = await self._script(WRITE_BACK)(
                        keys=[self._token_key(key)], args=[encode(key, token, self._cipher), token.obtained_at or 0]
                    )
                    log.info("token_store_written_back", key=key, written=bool(written))
                if self._local.get(key) is token:  # a save during the write-back stays pending
                    self._dirty.discard(key)
        except errors() as exc:
            await self._explain(exc)
            return
        if not self._health.up:
            self._health.mark_up()

    async def _acquire(self, key: str) -> str | None:
        """Take the shared lock (None: Redis is down and this store falls back to the local lock)."""
        owner = secrets.token_hex(16)
        ttl_ms = max(1, round(self.lock_ttl * 1000))
        waited = False
        while True:
            try:
                if not waited:
                    await self._call(lambda _r: self._link().current_master())
                taken = await self._call(lambda r: r.set(self._lock_key(key), owner, nx=True, px=ttl_ms))
                if taken:
                    await self._replicated("lock", key)
            except StoreUnavailable as exc:
                if not self._fallback or exc.misconfigured:
                    raise
                log.warning(
                    "token_store_unavailable",
                    op="lock",
                    key=key,
                    detail="refreshing without the shared lock: another process may refresh at the same time",
                )
                return None
            if taken:
                if waited:
                    log.info("token_lock_acquired", key=key)
                return owner
            if not waited:
                waited = True
                log.info("token_lock_wait", key=key, detail="another process is refreshing; waiting for its token")
            await self._clock.sleep(LOCK_POLL)

    async def _keep(self, key: str, owner: str, done: asyncio.Event) -> None:
        """Extend the lock while its holder works (until `done`), so only a dead holder's lock expires."""
        ttl_ms = max(1, round(self.lock_ttl * 1000))
        while not await wait_event(self._clock, done, self.lock_ttl / 3):
            try:
                kept = await self._call(
                    lambda _r: self._script(EXTEND)(keys=[self._lock_key(key)], args=[owner, ttl_ms])
                )
            except StoreUnavailable:
                continue
            if not kept:
                log.warning("token_lock_lost", key=key, detail="the refresh lock expired while held")
                return
