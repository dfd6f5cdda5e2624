"""The redis-py client behind the Redis store: one server, Sentinel's current master, or a Cluster.

`connect(target)` builds the asyncio client (`Redis`, `Sentinel.master_for`, `RedisCluster`): every
command the store sends goes to the master of the moment, and redis-py asks the sentinels again
(or refreshes the cluster's slot map) after a connection error, a READONLY answer from a demoted
master, or a MOVED. `explain(exc)` turns a failure into a reason fit for /-/status and a log line
(never a password): for Sentinel it asks every sentinel what it knows of the master, so a name no
sentinel monitors is told apart from an outage or a failover in progress. A misconfiguration (no
such master, a cluster URL at a server without cluster mode) is `Reason.misconfigured`: the store
then refuses to stand in for Redis, so the routes wait (not ready) instead of each process
refreshing on its own.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from authproxy.config.redis_url import RedisTarget

try:  # the `redis` extra
    from redis.asyncio import Redis
    from redis.asyncio.cluster import ClusterNode, RedisCluster
    from redis.asyncio.connection import SSLConnection, parse_url
    from redis.asyncio.retry import Retry
    from redis.asyncio.sentinel import MasterNotFoundError, Sentinel
    from redis.backoff import NoBackoff
    from redis.exceptions import AuthenticationError, RedisClusterException, RedisError
except ImportError:  # pragma: no cover - checked by build_store
    Redis = None  # type: ignore[assignment,misc]

CONNECT_TIMEOUT, COMMAND_TIMEOUT = 2.0, 5.0
DIAGNOSE_TIMEOUT = 2.0  # seconds to ask the sentinels what they know, after discovery failed
REPLICA_WAIT_MS = 1000  # Sentinel: how long a lock or a save waits for one replica's acknowledgement


@dataclass(frozen=True, slots=True)
class Reason:
    """Why Redis failed, for status and logs; `misconfigured`: waiting will not help, the config must change."""

    text: str
    misconfigured: bool = False


def errors() -> tuple[type[BaseException], ...]:
    """What a Redis command may raise that means "Redis is not usable now" (cluster errors included)."""
    return (RedisError, RedisClusterException, OSError)


class Connection:
    """The store's client for `target`, created inside the running loop, and what closing it takes."""

    def __init__(self, target: RedisTarget, url: str, sentinel_password: str | None = None) -> None:
        self.target = target
        self._sentinel: Any = None
        options: dict[str, Any] = {
            "socket_connect_timeout": CONNECT_TIMEOUT,
            "socket_timeout": COMMAND_TIMEOUT,
            "retry": Retry(NoBackoff(), 1),  # one quick retry: a pooled connection may predate a restart
        }
        if target.mode == "plain":
            self.client: Any = Redis.from_url(url, **options)
            return
        node = _node_options(target)
        if target.mode == "sentinel":
            sentinel_options = {
                **{k: v for k, v in node.items() if k.startswith(("ssl", "socket_"))},
                "socket_connect_timeout": CONNECT_TIMEOUT,
                "socket_timeout": CONNECT_TIMEOUT,
                "password": sentinel_password,
            }
            self._sentinel = Sentinel(list(target.nodes), sentinel_kwargs=sentinel_options, **node, **options)
            self.client = self._sentinel.master_for(target.service, redis_class=Redis)
        else:
            node.pop("db", None)
            nodes = [ClusterNode(host, port) for host, port in target.nodes]
            self.client = RedisCluster(startup_nodes=nodes, **node, **options)

    async def current_master(self) -> None:
        """Sentinel: ask the sentinels for the master now and drop idle connections to a former one.

        Taken before each lock: after a failover of a live master, a pooled connection may still
        reach the old one, which takes writes until the sentinels demote it (seconds later).
        """
        if self.target.mode == "sentinel":
            await self.client.connection_pool.get_master_address()

    async def replicated(self) -> int | None:
        """Sentinel: wait until one replica has what was just written (WAIT 1); None elsewhere.

        A lock or token a replica acknowledged survives a failover to it; 0 replicas within
        REPLICA_WAIT_MS is reported by the caller and not an error (the write stands on the master).
        """
        if self.target.mode != "sentinel":
            return None
        return int(await self.client.execute_command("WAIT", 1, REPLICA_WAIT_MS))

    async def explain(self, exc: BaseException) -> Reason:
        """Why `exc` happened, in words for an operator; asks the sentinels when discovery failed."""
        if self.target.mode == "cluster" and "Cluster mode is not enabled" in str(exc):
            hosts = ",".join(f"{h}:{p}" for h, p in self.target.nodes)
            return Reason(
                f"{hosts} is not a Redis Cluster (cluster mode is not enabled there); for one server write "
                "store.url: redis://host:6379/0 (without store.cluster), or name the cluster's nodes",
                misconfigured=True,
            )
        if self.target.mode == "sentinel" and isinstance(exc, MasterNotFoundError):
            return await self._ask_sentinels()
        if isinstance(exc, AuthenticationError):
            return Reason("AuthenticationError: check the user and password in store.url")
        return Reason(type(exc).__name__)

    async def _ask_sentinels(self) -> Reason:
        service = self.target.service
        asked = ", ".join(f"{h}:{p}" for h, p in self.target.nodes)
        answered, knowing = 0, 0
        for sentinel in self._sentinel.sentinels:
            try:
                async with asyncio.timeout(DIAGNOSE_TIMEOUT):
                    masters = await sentinel.sentinel_masters()
            except (RedisError, OSError):  # TimeoutError included
                continue
            answered += 1
            knowing += service in masters
        if answered and not knowing:
            return Reason(
                f"no sentinel knows a master named {service!r} (asked {asked}); check the name in store.url "
                "(or store.sentinel_master) against SENTINEL MONITOR in sentinel.conf",
                misconfigured=True,
            )
        if not answered:
            return Reason(f"no sentinel answered (asked {asked}); check the addresses and store.sentinel_password")
        return Reason(f"the sentinels ({asked}) report master {service!r} down (a failover in progress?)")

    async def aclose(self) -> None:
        await self.client.aclose()
        if self._sentinel is not None:
            await self._sentinel.aclose()


def blocking_client(target: RedisTarget, url: str, sentinel_password: str | None = None) -> Any:
    """A synchronous client on the same target, for `RedisStore.keys()` (tests, diagnostics)."""
    from redis import Redis as BlockingRedis
    from redis.cluster import ClusterNode as BlockingNode
    from redis.cluster import RedisCluster as BlockingCluster
    from redis.sentinel import Sentinel as BlockingSentinel

    if target.mode == "plain":
        return BlockingRedis.from_url(url, socket_connect_timeout=CONNECT_TIMEOUT)
    node = _node_options(target)
    if target.mode == "sentinel":
        sentinel = BlockingSentinel(
            list(target.nodes), sentinel_kwargs={"password": sentinel_password, "socket_timeout": CONNECT_TIMEOUT}
        )
        return sentinel.master_for(target.service, **node)
    node.pop("db", None)
    return BlockingCluster(startup_nodes=[BlockingNode(h, p) for h, p in target.nodes], **node)


def _node_options(target: RedisTarget) -> dict[str, Any]:
    """redis-py's own reading of the URL's credentials, db, TLS and query options (not the address)."""
    options: dict[str, Any] = dict(parse_url(target.node_url))
    options.pop("host", None)
    options.pop("port", None)
    if options.pop("connection_class", None) is SSLConnection:
        options["ssl"] = True
    return options
