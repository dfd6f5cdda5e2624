"""Scripted raw HTTP servers on real sockets, and the helpers the transport tests share.

Each server is an asyncio server on 127.0.0.1 that answers every request on a connection with the
next scripted reply (bytes, or a coroutine for stalls, half answers and misbehaviour), so framing edge
cases (HEAD, 204, 1xx, bodies delimited by close, cut bodies, idle closes, stray bytes) are exact.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from multidict import CIMultiDict
from yarl import URL

from authproxy.upstream.aiohttp_transport import AiohttpTransport
from authproxy.upstream.pool import NativeTransport
from authproxy.upstream.transport import Endpoint, Transport

Reply = bytes | Callable[[asyncio.StreamWriter], Awaitable[None]]
TRANSPORTS: dict[str, Callable[..., Transport]] = {"native": NativeTransport, "aiohttp": AiohttpTransport}


def ok(body: bytes = b"hello", *extra: str) -> bytes:
    head = [f"HTTP/1.1 200 OK\r\nContent-Length: {len(body)}\r\n", *(f"{h}\r\n" for h in extra), "\r\n"]
    return "".join(head).encode() + body


@dataclass
class RawServer:
    """Answers requests with `replies` in order; records request heads and which connection carried them.

    Bodies are read by their Content-Length, or decoded when chunked. `reader` is the stream of the
    request being answered (for replies that read on, like a tunnel); `closed` lists the connections
    the client closed, in order.
    """

    replies: list[Reply] = field(default_factory=list)
    heads: list[bytes] = field(default_factory=list)
    bodies: list[bytes] = field(default_factory=list)
    connections: list[int] = field(default_factory=list)  # connection number per request
    closed: list[int] = field(default_factory=list)  # connections the client closed
    url: str = ""
    endpoint: Endpoint | None = None  # one pool key for all of a test's requests
    reader: asyncio.StreamReader | None = None
    tls: ssl.SSLContext | None = None
    read_bodies: bool = True  # False: answer (or stall) without reading the request's body
    _server: asyncio.Server | None = None
    _count: int = 0
    _writers: list[asyncio.StreamWriter] = field(default_factory=list)

    async def __aenter__(self) -> RawServer:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0, ssl=self.tls)
        scheme = "https" if self.tls is not None else "http"
        self.url = f"{scheme}://127.0.0.1:{self._server.sockets[0].getsockname()[1]}"
        self.endpoint = Endpoint(URL(self.url))
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        for writer in self._writers:
            writer.close()
        await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._count += 1
        number = self._count
        self._writers.append(writer)
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                self.heads.append(head)
                self.connections.append(number)
                lines = head.lower().split(b"\r\n")
                length = next((int(line[15:]) for line in lines if line.startswith(b"content-length:")), 0)
                if not self.read_bodies:
                    self.bodies.append(b"")
                elif b"transfer-encoding: chunked" in lines:
                    self.bodies.append(await _chunked(reader))
                else:
                    self.bodies.append(await reader.readexactly(length) if length else b"")
                reply = self.replies.pop(0)
                self.reader = reader
                if isinstance(reply, bytes):
                    writer.write(reply)
                    await writer.drain()
                else:
                    await reply(writer)
                if writer.is_closing():
                    return
        except (asyncio.IncompleteReadError, ConnectionError, ssl.SSLError):
            self.closed.append(number)
            writer.close()


async def _chunked(reader: asyncio.StreamReader) -> bytes:
    body = b""
    while size := int((await reader.readuntil(b"\r\n")).strip(), 16):
        body += await reader.readexactly(size)
        await reader.readexactly(2)
    await reader.readexactly(2)
    return body


async def fetch(
    pool: Transport,
    server: RawServer,
    method: str = "GET",
    body: object = None,
    read_timeout: float = 5.0,
    connect_timeout: float = 5.0,
) -> tuple[int, CIMultiDict[str], bytes]:
    """One request to `server.endpoint`, its body read whole and the response released."""
    assert server.endpoint is not None
    response = await pool.request(
        server.endpoint,
        method,
        "/p?q=1",
        CIMultiDict({"X-Test": "1"}),
        body,  # type: ignore[arg-type]
        connect_timeout=connect_timeout,
        read_timeout=read_timeout,
    )
    try:
        data = b"".join([chunk async for chunk in response.chunks()])
    finally:
        response.release()
    return response.status, response.headers, data


async def until(predicate: Callable[[], bool]) -> None:
    """Let the loop run until `predicate()` holds (callers bound it with wait_for)."""
    while not predicate():
        await asyncio.sleep(0)


async def first_of(*aws: Awaitable[object]) -> None:
    """Until the first of `aws` is done (the others are cancelled): a scripted reply that reacts to whichever
    comes first, the client's next request on its connection or the test's cue."""
    tasks = [asyncio.ensure_future(aw) for aw in aws]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        # Until they are gone (a read still waiting would refuse the server's next one); a closed connection is an
        # answer too.
        await asyncio.gather(*tasks, return_exceptions=True)
