"""The Redis store's URL forms, parsed without redis-py: one server, Sentinel, or Cluster.

    redis://[user:password@]host:6379/0          one server (rediss:// for TLS, unix:///path.sock)
    redis+sentinel://[user:password@]s1:26379,s2:26379/mymaster[/db]   (rediss+sentinel:// for TLS)
    redis+cluster://[user:password@]n1:7000,n2:7001[/0]                (rediss+cluster:// for TLS)

The keys `store.sentinel_master` and `store.cluster` say the same with a redis:// or rediss:// URL
(whose hosts then are the sentinels or the cluster's seed nodes). The password in the URL is the
data nodes' (the master's, the cluster's); the sentinels' own is `store.sentinel_password`. Query
options (`?ssl_ca_certs=...`) are redis-py's, as for one server, and apply to every node.

Parsed here, in the config layer, so `authproxy check` reports a bad URL with the other problems;
every message says what to write and never repeats the URL (it may hold a password).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Literal
from urllib.parse import unquote, urlsplit

Mode = Literal["plain", "sentinel", "cluster"]
SCHEMES = {
    "redis": ("plain", False),
    "rediss": ("plain", True),
    "unix": ("plain", False),
    "redis+sentinel": ("sentinel", False),
    "rediss+sentinel": ("sentinel", True),
    "redis+cluster": ("cluster", False),
    "rediss+cluster": ("cluster", True),
}
DEFAULT_PORT = {"plain": 6379, "sentinel": 26379, "cluster": 6379}
EXAMPLES = {
    "plain": "redis://127.0.0.1:6379/0",
    "sentinel": "redis+sentinel://127.0.0.1:26379,127.0.0.1:26380/mymaster/0",
    "cluster": "redis+cluster://127.0.0.1:7000,127.0.0.1:7001",
}
_HOST = re.compile(r"^(?:\[(?P<v6>[0-9A-Fa-f:.]+)\]|(?P<name>[^\[\]:/]+))(?::(?P<port>[0-9]{1,5}))?$")


@dataclass(frozen=True, slots=True)
class RedisTarget:
    """Where the Redis store connects: the mode, its nodes, and a plain URL carrying the shared options.

    `node_url` is a redis:// or rediss:// URL with the credentials, db and query of the original and
    the first node's address: redis-py's own parser turns it into the connection options every
    node gets, so TLS and query options behave as for one server.
    """

    mode: Mode
    nodes: tuple[tuple[str, int], ...]  # the server, the sentinels, or the cluster's seed nodes
    node_url: str
    service: str | None = None  # Sentinel: the master's name
    db: int = 0
    tls: bool = False
    path: str | None = None  # unix:// socket
    shown_path: str = field(default="", compare=False)  # the path as written, for `address()`

    def where(self) -> str:
        """Enough to say where, never a user or password."""
        hosts = ",".join(_join(host, port) for host, port in self.nodes)
        if self.mode == "sentinel":
            return f"Redis master {self.service!r} via sentinels {hosts} (db {self.db})"
        if self.mode == "cluster":
            return f"Redis Cluster at {hosts}"
        return self.address()

    def address(self) -> str:
        """host:port/db (or the socket path), as the single-server store always named itself."""
        if self.path is not None:
            return self.path
        return _join(*self.nodes[0]) + self.shown_path


def parse_redis_url(url: str, *, sentinel_master: str | None = None, cluster: bool = False) -> RedisTarget:
    """The target `url` (and the keys that change its meaning) names; ValueError saying what to write."""
    scheme, sep, rest = url.partition("://")
    scheme = scheme.lower()
    if not sep or scheme not in SCHEMES:
        raise ValueError(
            "must start with redis://, rediss:// (TLS), unix://, redis+sentinel:// or redis+cluster:// "
            f"(rediss+... for TLS); e.g. {EXAMPLES['plain']}"
        )
    mode, tls = SCHEMES[scheme]
    if sentinel_master is not None and cluster:
        raise ValueError("store.sentinel_master and store.cluster exclude each other: Sentinel or Cluster, not both")
    if mode != "plain" and (sentinel_master is not None or cluster):
        raise ValueError(f"a {scheme}:// URL already says the mode; remove store.sentinel_master and store.cluster")
    if scheme == "unix":
        if sentinel_master is not None or cluster:
            raise ValueError("Sentinel and Cluster need redis:// or rediss:// host:port addresses, not unix://")
        return _unix(url)
    if sentinel_master is not None:
        mode = "sentinel"
    elif cluster:
        mode = "cluster"
    netloc, _, tail = _split_netloc(rest)
    userinfo, _, hosts = netloc.rpartition("@")
    example = EXAMPLES[mode]
    nodes = tuple(_node(item, DEFAULT_PORT[mode], example) for item in hosts.split(","))
    if mode == "plain" and len(nodes) > 1:
        raise ValueError(
            "names several hosts; for Sentinel write redis+sentinel://host:26379,host:26380/<master name>/0 "
            "(or set store.sentinel_master), for Cluster redis+cluster://host:7000,host:7001 (or store.cluster: true)"
        )
    path, query = _split_query(tail)
    segments = [unquote(s) for s in path.strip("/").split("/")] if path.strip("/") else []
    service = sentinel_master
    if mode == "sentinel" and sentinel_master is None:
        if not segments or not segments[0]:
            raise ValueError(f"names no master: write the Sentinel service name after the hosts, e.g. {example}")
        service, segments = segments[0], segments[1:]
    if service is not None and not service.strip():
        raise ValueError("store.sentinel_master is empty: set the name the sentinels monitor (SENTINEL MONITOR)")
    db = _db(segments, example)
    if mode == "cluster" and db != 0:
        raise ValueError(f"a Redis Cluster has only database 0; write {example}")
    host, port = nodes[0]
    node_url = f"{'rediss' if tls else 'redis'}://{userinfo + '@' if userinfo else ''}{_join(host, port)}/{db}{query}"
    _check_userinfo(node_url)
    return RedisTarget(mode, nodes, node_url, service, db, tls, shown_path=path)


def _unix(url: str) -> RedisTarget:
    parts = urlsplit(url)
    if not parts.path:
        raise ValueError("names no socket; write e.g. unix:///run/redis/redis.sock")
    return RedisTarget("plain", (("localhost", 0),), url, path=parts.path)


def _split_netloc(rest: str) -> tuple[str, str, str]:
    """(netloc, "", path?query#fragment): the netloc ends at the first /, ? or #."""
    match = re.search(r"[/?#]", rest)
    if match is None:
        return rest, "", ""
    return rest[: match.start()], "", rest[match.start() :]


def _split_query(tail: str) -> tuple[str, str]:
    tail = tail.split("#", 1)[0]
    path, sep, query = tail.partition("?")
    return path, (sep + query) if query else ""


def _node(item: str, default_port: int, example: str) -> tuple[str, int]:
    match = _HOST.match(item.strip())
    if not item.strip() or match is None:
        raise ValueError(f"names no host (or a malformed host:port); write e.g. {example}")
    port = int(match["port"]) if match["port"] else default_port
    if not 0 < port < 65536:
        raise ValueError(f"has a port outside 1-65535; write e.g. {example}")
    return (match["v6"] or match["name"]), port


def _db(segments: list[str], example: str) -> int:
    if not segments:
        return 0
    if len(segments) > 1 or not segments[0].isdigit():
        raise ValueError(f"the path after the hosts must be a database number; write e.g. {example}")
    return int(segments[0])


def _check_userinfo(node_url: str) -> None:
    try:
        urlsplit(node_url).port  # noqa: B018 - raises ValueError for what the parser cannot read
    except ValueError:
        raise ValueError(
            "cannot be read (a password with '@', '/' or ':'? percent-encode it, e.g. %40 for @)"
        ) from None


def _join(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def redis_secrets(url: str | None) -> list[str]:
    """The password in a Redis URL, as written and decoded, for the log redactor (the URL is one too)."""
    if not url:
        return []
    netloc = _split_netloc(url.partition("://")[2])[0]
    userinfo = netloc.rpartition("@")[0]
    password = userinfo.partition(":")[2] if userinfo else ""
    return [p for p in dict.fromkeys((password, unquote(password))) if p]
