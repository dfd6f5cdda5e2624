"""Helpers for the bad-input suite: raw HTTP exchanges and upstreams that break the protocol.

`raw_request` speaks HTTP/1.1 over a plain socket so a test can send bytes no client library
would send, and tells whether the server closed the connection. `BrokenUpstream` is a real TCP
server on 127.0.0.1 that accepts a request and then misbehaves (closes, answers garbage).
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from typing import Any

from multidict import CIMultiDict


@dataclass
class RawResponse:
    """One response read off a raw socket (status None when nothing parseable arrived)."""

    raw: bytes
    closed: bool  # the server closed the connection (EOF seen)
    status: int | None = None
    version: bytes = b""
    headers: CIMultiDict[str] = field(default_factory=CIMultiDict)
    body: bytes = b""

    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def error_code(self) -> str | None:
        """`error.code` of a JSON error body, None when the body is not our JSON error."""
        try:
            doc = self.json()
        except ValueError:
            return None
        error = doc.get("error") if isinstance(doc, dict) else None
        return error.get("code") if isinstance(error, dict) else None


def parse_response(raw: bytes, closed: bool) -> RawResponse:
    head, sep, rest = raw.partition(b"\r\n\r\n")
    response = RawResponse(raw=raw, closed=closed)
    if not sep:
        return response
    lines = head.split(b"\r\n")
    parts = lines[0].split(b" ", 2)
    if len(parts) < 2 or not parts[1].isdigit():
        return response
    response.version, response.status = parts[0], int(parts[1])
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        response.headers.add(name.decode("latin-1").strip(), value.decode("latin-1").strip())
    response.body = rest
    if "Content-Length" in response.headers:
        response.body = rest[: int(response.headers["Content-Length"])]
    return response


def _complete(raw: bytes) -> bool:
    """True when `raw` holds a whole response with a Content-Length (a keep-alive answer)."""
    head, sep, rest = raw.partition(b"\r\n\r\n")
    if not sep:
        return False
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return len(rest) >= int(value.strip())
    return False


def _should_close(raw: bytes) -> bool:
    head = raw.partition(b"\r\n\r\n")[0].lower()
    return head.startswith(b"http/1.0") or b"\r\nconnection: close" in head


class RawConnection:
    """A raw client connection to `url` (http://host:port)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, url: str) -> RawConnection:
        host, port = url.removeprefix("http://").rsplit(":", 1)
        reader, writer = await asyncio.open_connection(host, int(port))
        return cls(reader, writer)

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def response(self, timeout: float = 5.0) -> RawResponse:
        """Read one response: until it is complete (keep-alive), the server closes, or `timeout`.

        A response the server marks as closing (HTTP/1.0, `Connection: close`) is read to EOF,
        so `closed` tells whether the connection really went away.
        """
        raw, closed = b"", False
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            if raw and _complete(raw) and not _should_close(raw):
                break
            left = deadline - loop.time()
            if left <= 0:
                break
            try:
                chunk = await asyncio.wait_for(self.reader.read(65536), left)
            except TimeoutError:
                break
            except ConnectionResetError:
                closed = True
                break
            if not chunk:
                closed = True
                break
            raw += chunk
        return parse_response(raw, closed)

    async def quiet_for(self, seconds: float) -> bytes:
        """Wait up to `seconds` on a socket read; return what arrived (b"" if nothing did)."""
        try:
            return await asyncio.wait_for(self.reader.read(65536), seconds)
        except TimeoutError:
            return b""

    async def wait_closed(self, timeout: float) -> bool:
        """True when the server closes the connection within `timeout` (anything it sends is dropped)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while (left := deadline - loop.time()) > 0:
            try:
                chunk = await asyncio.wait_for(self.reader.read(65536), left)
            except TimeoutError:
                return False
            except ConnectionError:
                return True
            if not chunk:
                return True
        return False

    def close(self) -> None:
        self.writer.close()


async def raw_request(url: str, payload: bytes, *, timeout: float = 5.0) -> RawResponse:
    """Send `payload` on a new connection and read one response."""
    conn = await RawConnection.open(url)
    try:
        await conn.send(payload)
        return await conn.response(timeout)
    finally:
        conn.close()


def get(target: str, *headers: str, method: str = "GET", body: bytes = b"") -> bytes:
    """A request in raw bytes (`target` and header lines as given, nothing escaped)."""
    lines = [f"{method} {target} HTTP/1.1", "Host: 127.0.0.1", *headers]
    if body:
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


class BrokenUpstream:
    """A TCP server that reads a request head and then breaks the exchange.

    mode `close`: closes without a byte; `garbage`: answers bytes that are not HTTP;
    `reset`: aborts the connection (RST); `ok`: answers 200 "ok". Every request head received
    is kept, raw, in `heads`.
    """

    def __init__(self, mode: str) -> None:
        self.mode = mode
        self.connections = 0
        self.heads: list[bytes] = []
        self.url = ""
        self._server: asyncio.Server | None = None

    async def __aenter__(self) -> BrokenUpstream:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        port = self._server.sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            self.heads.append(await reader.readuntil(b"\r\n\r\n"))
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
            writer.close()
            return
        if self.mode == "ok":
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
            await writer.drain()
        if self.mode == "garbage":
            writer.write(b"THIS IS NOT HTTP \x00\xff\r\n\r\n")
            await writer.drain()
        if self.mode == "reset":
            writer.transport.abort()
            return
        writer.close()
