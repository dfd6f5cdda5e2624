"""A real forward proxy, tinyproxy (Debian's package), on a free loopback port, for the egress proxy tests.

    proxy = TinyProxy(tmp_path, basic_auth=("user", "pass")).start()   # returns once it accepts connections
    proxy.url                                                           # http://127.0.0.1:PORT
    proxy.wait_for("CONNECT 127.0.0.1:4431")                            # its log proves the path a request took
    proxy.stop()

`connect_ports`: tinyproxy's ConnectPort lines (none: CONNECT to any port; `(1,)`: refuses every CONNECT here).
Synchronous, like tests/fakes/redis_server.py, so one session-scoped proxy serves many tests.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import threading
from pathlib import Path

import pytest

from tests.fakes.redis_server import free_port, stop_process

TINYPROXY = shutil.which("tinyproxy") or ("/usr/bin/tinyproxy" if Path("/usr/bin/tinyproxy").exists() else None)
# CI installs tinyproxy and sets this, so a failed install fails these tests instead of skipping them.
REQUIRED = os.environ.get("AUTHPROXY_TEST_REQUIRE_TINYPROXY") == "1"
needs_tinyproxy = pytest.mark.skipif(
    TINYPROXY is None and not REQUIRED, reason="tinyproxy is not installed (.ci/run installs it)"
)
WAIT = 10.0  # seconds, for startup and for a log line: a bound on failure, never a pause on success


class TinyProxy:
    def __init__(
        self,
        directory: Path,
        *,
        basic_auth: tuple[str, str] | None = None,
        connect_ports: tuple[int, ...] = (),
    ) -> None:
        self.directory = directory
        self.port = free_port()
        self.basic_auth = basic_auth
        self.connect_ports = connect_ports
        self.proc: subprocess.Popen[bytes] | None = None
        self.lines: list[str] = []
        self._seen = threading.Condition()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> TinyProxy:
        assert TINYPROXY is not None, "tinyproxy is not on PATH (apt-get install tinyproxy)"
        self.directory.mkdir(parents=True, exist_ok=True)
        conf = [
            f"Port {self.port}",
            "Listen 127.0.0.1",
            "Timeout 60",
            "MaxClients 100",
            "Allow 127.0.0.1",
            "LogLevel Info",
            *(f"ConnectPort {port}" for port in self.connect_ports),
        ]
        if self.basic_auth is not None:
            conf.append(f"BasicAuth {self.basic_auth[0]} {self.basic_auth[1]}")
        path = self.directory / f"tinyproxy-{self.port}.conf"
        path.write_text("\n".join(conf) + "\n")
        self.proc = subprocess.Popen(
            [TINYPROXY, "-d", "-c", str(path)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT
        )
        threading.Thread(target=self._read, daemon=True).start()
        assert self.wait_for("Accepting connections"), f"tinyproxy did not start: {self.lines[-5:]}"
        return self

    def wait_for(self, text: str) -> bool:
        """Whether a log line holding `text` arrives (at most WAIT seconds; a condition, not a sleep)."""
        with self._seen:
            return self._seen.wait_for(lambda: any(text in line for line in self.lines), WAIT)

    def log_has(self, text: str) -> bool:
        with self._seen:
            return any(text in line for line in self.lines)

    def _read(self) -> None:
        proc = self.proc
        assert proc is not None and proc.stdout is not None
        with contextlib.suppress(ValueError, OSError):
            for raw in proc.stdout:
                with self._seen:
                    self.lines.append(raw.decode("utf-8", "replace"))
                    self._seen.notify_all()

    def stop(self) -> None:
        stop_process(self.proc)
        self.proc = None
