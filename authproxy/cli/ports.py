"""Is the listen address free? Asked before anything is started, answered in one line.

A taken port used to surface as a 30-line traceback, after a token had already been fetched.
The probe binds (and closes) the address the way the server will; when it is taken, a quick
GET /-/health tells another authproxy from any other program.
"""

from __future__ import annotations

import contextlib
import errno
import json
import socket
import urllib.request

HEALTH_TIMEOUT = 1.0  # seconds: a local answer is immediate; a program that never answers is "another program"


class AddressInUse(Exception):
    """host:port cannot be bound; `advice` names what is probably there and what to run instead."""

    def __init__(self, host: str, port: int, reason: str) -> None:
        super().__init__(f"{host}:{port}: {reason}")
        self.host, self.port, self.reason = host, port, reason

    @classmethod
    def from_error(cls, exc: OSError, host: str, port: int) -> AddressInUse | None:
        if exc.errno == errno.EADDRINUSE:
            return cls(host, port, "in use")
        if exc.errno in (errno.EACCES, errno.EADDRNOTAVAIL):
            return cls(host, port, exc.strerror or str(exc))
        return None

    def address(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    def other_listen(self) -> str:
        """A suggestion: the next port (or any free one for port 0's sake)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port + 1 if 0 < self.port < 65535 else 0}"

    def advice(self, command: str) -> str:
        if self.reason != "in use":
            return f"cannot listen on {self.address()}: {self.reason}; choose another address with --listen: {command}"
        there = (
            "another authproxy (its /-/health answers)" if answers_health(self.host, self.port) else ("another program")
        )
        return (
            f"cannot listen on {self.address()}: the address is in use, probably by {there}; stop it, "
            f"or choose another address with --listen: {command}"
        )


def probe_listen(host: str, port: int) -> None:
    """Raise AddressInUse when the server could not bind host:port (port 0 always binds)."""
    if port == 0:
        return
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise AddressInUse(host, port, f"cannot resolve {host} ({exc.strerror})") from None
    for family, kind, proto, _, address in infos:
        with socket.socket(family, kind, proto) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the server does: TIME_WAIT is no clash
            try:
                sock.bind(address)
            except OSError as exc:
                taken = AddressInUse.from_error(exc, host, port)
                if taken is not None:
                    raise taken from None
                raise


def answers_health(host: str, port: int) -> bool:
    """True when an authproxy answers GET /-/health at host:port."""
    if host in ("0.0.0.0", "::", ""):
        host = "127.0.0.1"
    url = f"http://{'[' + host + ']' if ':' in host else host}:{port}/-/health"
    with (
        contextlib.suppress(OSError, ValueError, AttributeError),
        urllib.request.urlopen(url, timeout=HEALTH_TIMEOUT) as response,
    ):
        return json.loads(response.read(1024)).get("status") == "ok"
    return False
