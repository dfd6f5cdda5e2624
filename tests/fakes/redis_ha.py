"""Highly available Redis as real processes: Sentinel (a master, a replica, three sentinels) and a
three-master Cluster, every node a `redis-server` on free loopback ports.

    with running_sentinels(tmp_path) as ha:      # returns once the sentinels see the replica and each other
        ha.url                                   # redis+sentinel://:pw@127.0.0.1:a,...:c/mymaster/0
        ha.failover()                            # SENTINEL FAILOVER; returns once every node agrees
    with running_cluster(tmp_path) as cluster:   # returns once CLUSTER INFO says ok on every node
        cluster.url                              # redis+cluster://127.0.0.1:a,...

Synchronous like `RedisServer` (run them with asyncio.to_thread from a test that has traffic in
flight). Every wait polls the real state with a deadline (`poll`); none is a blind sleep.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import redis

from tests.fakes.redis_server import RedisServer, free_port

SERVICE = "mymaster"
DEADLINE = 30.0  # seconds any wait may take on a loaded machine (only guards a hang)
REDIS_CLI = shutil.which("redis-cli")


def poll(predicate: Callable[[], bool], what: str, timeout: float = DEADLINE) -> None:
    """Until `predicate()` holds (errors count as "not yet"); AssertionError naming `what` after `timeout`."""
    end = time.monotonic() + timeout
    while True:
        with contextlib.suppress(redis.RedisError, OSError):
            if predicate():
                return
        assert time.monotonic() < end, f"timed out waiting for {what}"
        time.sleep(0.05)  # clock-ok: polling real processes' replication/sentinel/cluster state, bounded above


class SentinelSet:
    """A master and a replica (password `password`) watched by three sentinels (quorum 2)."""

    def __init__(self, directory: Path, password: str | None = None, sentinel_password: str | None = None) -> None:
        self.password, self.sentinel_password = password, sentinel_password
        auth = ("--repl-diskless-sync-delay", "0", *(("--masterauth", password) if password else ()))
        self.master = RedisServer(directory / "a", password=password, args=auth)
        self.replica = RedisServer(directory / "b", password=password, args=auth)
        self.sentinels = [
            RedisServer(directory / f"s{i}", password=sentinel_password, args=("--sentinel",), ready=b"+monitor master")
            for i in range(3)
        ]

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        hosts = ",".join(f"127.0.0.1:{s.port}" for s in self.sentinels)
        return f"redis+sentinel://{auth}{hosts}/{SERVICE}/0"

    def start(self) -> SentinelSet:
        self.master.start()
        self.replica.args = (*self.replica.args, "--replicaof", "127.0.0.1", str(self.master.port))
        self.replica.start()
        poll(lambda: self.info(self.replica)["master_link_status"] == "up", "the replica to sync")
        for sentinel in self.sentinels:
            sentinel.config = "\n".join(
                [
                    f"sentinel monitor {SERVICE} 127.0.0.1 {self.master.port} 2",
                    f"sentinel down-after-milliseconds {SERVICE} 1000",
                    f"sentinel failover-timeout {SERVICE} 10000",
                    *([f"sentinel auth-pass {SERVICE} {self.password}"] if self.password else []),
                    "",
                ]
            )
            sentinel.start()
        for sentinel in self.sentinels:  # a failover needs the replica known and a quorum of peers
            poll(lambda s=sentinel: self._sees_all(s), "the sentinels to find the replica and each other")
        return self

    def _sees_all(self, sentinel: RedisServer) -> bool:
        state = self.ask(sentinel).sentinel_master(SERVICE)
        return int(state["num-slaves"]) >= 1 and int(state["num-other-sentinels"]) == 2

    def ask(self, sentinel: RedisServer) -> redis.Redis:
        return redis.Redis(port=sentinel.port, password=self.sentinel_password, socket_timeout=5)

    def node(self, server: RedisServer) -> redis.Redis:
        return redis.Redis(port=server.port, password=self.password, socket_timeout=5)

    def info(self, server: RedisServer) -> dict[str, object]:
        with self.node(server) as client:
            return client.info("replication")

    def current_master(self) -> RedisServer | None:
        """The node every sentinel names as master (None while they disagree)."""
        ports = set()
        for sentinel in self.sentinels:
            with self.ask(sentinel) as client:
                ports.add(int(client.sentinel_get_master_addr_by_name(SERVICE)[1]))
        if len(ports) != 1:
            return None
        return self.master if ports == {self.master.port} else self.replica

    def failover(self) -> RedisServer:
        """SENTINEL FAILOVER, then wait until the sentinels, the new master and its new replica all agree."""
        old = self.current_master()
        assert old is not None, "the sentinels disagree on the master before the failover"
        new = self.replica if old is self.master else self.master
        with self.ask(self.sentinels[0]) as client:
            client.sentinel_failover(SERVICE)
        self.wait_for_master(new, old)
        return new

    def wait_for_master(self, new: RedisServer, old: RedisServer | None) -> None:
        poll(lambda: self.current_master() is new, "every sentinel to name the new master")
        poll(lambda: self.info(new)["role"] == "master", "the new master to take the role")
        if old is not None:
            poll(
                lambda: self.info(old)["role"] == "slave" and self.info(old)["master_link_status"] == "up",
                "the old master to follow the new one",
            )

    def stop(self) -> None:
        for server in [*self.sentinels, self.replica, self.master]:
            server.stop()


class ClusterNodes:
    """Three masters, slots 0-16383 split between them by `redis-cli --cluster create`."""

    def __init__(self, directory: Path) -> None:
        self.nodes = [
            RedisServer(
                directory / f"n{i}",
                args=("--cluster-enabled", "yes", "--cluster-port", str(free_port()), "--cluster-node-timeout", "2000"),
            )
            for i in range(3)
        ]

    @property
    def url(self) -> str:
        return "redis+cluster://" + ",".join(f"127.0.0.1:{n.port}" for n in self.nodes)

    def start(self) -> ClusterNodes:
        assert REDIS_CLI is not None, "redis-cli is not on PATH (apt-get install redis-tools)"
        for node in self.nodes:
            node.start()
        addresses = [f"127.0.0.1:{n.port}" for n in self.nodes]
        created = subprocess.run(
            [REDIS_CLI, "--cluster", "create", *addresses, "--cluster-yes"],
            capture_output=True,
            timeout=DEADLINE,
            check=False,
        )
        assert created.returncode == 0, created.stdout.decode(errors="replace")[-2000:]
        for node in self.nodes:
            poll(lambda n=node: self._ok(n), "every cluster node to report cluster_state:ok")
        return self

    @staticmethod
    def _ok(node: RedisServer) -> bool:
        with redis.Redis(port=node.port, socket_timeout=5) as client:
            return client.cluster("info")["cluster_state"] == "ok"  # type: ignore[no-any-return]

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()


@contextlib.contextmanager
def running_sentinels(
    directory: Path, password: str | None = None, sentinel_password: str | None = None
) -> Iterator[SentinelSet]:
    ha = SentinelSet(directory, password, sentinel_password)
    try:
        yield ha.start()
    finally:
        ha.stop()


@contextlib.contextmanager
def running_cluster(directory: Path) -> Iterator[ClusterNodes]:
    cluster = ClusterNodes(directory)
    try:
        yield cluster.start()
    finally:
        cluster.stop()
