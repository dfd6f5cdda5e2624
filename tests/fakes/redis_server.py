"""A real `redis-server` on a free loopback port, for the Redis store and scale-out tests.

    server = RedisServer(tmp_path).start()   # returns once it logs "Ready to accept connections"
    server.kill()                            # kill -9: an outage
    server.start()                           # the same port again, empty (nothing is persisted)
    server.stop()

Synchronous on purpose, so a session-scoped fixture can share one server (tests isolate
themselves with their own key prefix); starting takes a few milliseconds.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

REDIS_SERVER = shutil.which("redis-server")
# CI installs redis-server and sets this, so a failed install fails the suite instead of skipping it.
REQUIRED = os.environ.get("AUTHPROXY_TEST_REQUIRE_REDIS") == "1"
needs_redis = pytest.mark.skipif(
    REDIS_SERVER is None and not REQUIRED, reason="redis-server is not installed (.ci/run installs it)"
)
STARTUP_TIMEOUT = 10.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class RedisServer:
    """`args` are appended to the command line; `config` (a config file's text) comes first, as
    redis-server --sentinel needs; `ready` is the log line that says it listens (tests/fakes/redis_ha.py)."""

    def __init__(
        self,
        directory: Path,
        port: int | None = None,
        password: str | None = None,
        *,
        args: tuple[str, ...] = (),
        config: str | None = None,
        ready: bytes = b"Ready to accept connections",
    ) -> None:
        self.directory = directory
        self.port = port or free_port()
        self.password = password
        self.args, self.config, self.ready = args, config, ready
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        assert REDIS_SERVER is not None, "redis-server is not on PATH (apt-get install redis-server)"
        self.directory.mkdir(parents=True, exist_ok=True)
        argv = [REDIS_SERVER]
        if self.config is not None:
            (self.directory / "redis.conf").write_text(self.config)
            argv.append(str(self.directory / "redis.conf"))
        argv += ["--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        if self.password:
            argv += ["--requirepass", self.password]
        proc = self.proc = subprocess.Popen(
            [*argv, *self.args, "--dir", str(self.directory)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT
        )
        assert proc.stdout is not None
        watchdog = threading.Timer(STARTUP_TIMEOUT, proc.kill)  # a hung start ends in EOF below
        watchdog.start()
        try:
            while self.ready not in (line := proc.stdout.readline()):
                assert line, "redis-server exited before it was ready (port taken?)"
        finally:
            watchdog.cancel()
        threading.Thread(target=_drain, args=(proc,), daemon=True).start()  # a full pipe would stall it
        self.starts += 1
        return self

    def kill(self) -> None:
        """kill -9: connections drop at once, nothing is saved."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.proc = None

    def stop(self) -> None:
        stop_process(self.proc)
        self.proc = None


def stop_process(proc: subprocess.Popen[bytes] | None) -> None:
    """SIGTERM, up to 10 s to exit, then SIGKILL: how every fake started as a process is stopped."""
    if proc is not None and proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _drain(proc: subprocess.Popen[bytes]) -> None:
    assert proc.stdout is not None
    with contextlib.suppress(ValueError, OSError):
        while proc.stdout.readline():
            pass


@contextlib.contextmanager
def running_redis(directory: Path, password: str | None = None) -> Iterator[RedisServer]:
    server = RedisServer(directory, password=password).start()
    try:
        yield server
    finally:
        server.stop()
