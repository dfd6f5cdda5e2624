"""The aiohttp transport's `Tunnel`: the connection after a 101, taken over from aiohttp as raw bytes both ways."""

from __future__ import annotations

import aiohttp
from aiohttp.client_proto import ResponseHandler

from authproxy.upstream.aiohttp_pool import EndpointGate


class Feed:
    """The payload parser aiohttp hands an upgraded connection's bytes to: passes them through raw."""

    __slots__ = ("_inbox",)

    def __init__(self, inbox: aiohttp.StreamReader) -> None:
        self._inbox = inbox

    def feed_data(self, data: bytes) -> tuple[bool, bytes]:
        self._inbox.feed_data(data)  # pauses reading from the upstream past 2 * READ_BUFSIZE
        return False, b""  # (protocol error, tail): never an error, nothing left over

    def feed_eof(self) -> None:
        self._inbox.feed_eof()


class AiohttpTunnel:
    """The raw bytes of an upgraded connection, both ways, with flow control."""

    __slots__ = ("_gate", "_inbox", "_protocol", "_resp")

    def __init__(
        self,
        resp: aiohttp.ClientResponse,
        protocol: ResponseHandler,
        inbox: aiohttp.StreamReader,
        gate: EndpointGate | None,
    ) -> None:
        self._resp, self._protocol, self._inbox = resp, protocol, inbox
        self._gate = gate  # its endpoint's: the connection is busy until the tunnel closes

    async def read(self) -> bytes:
        try:
            return await self._inbox.readany()  # resumes reading from the upstream once drained
        except (TimeoutError, aiohttp.ClientError, OSError):
            return b""

    async def write(self, data: bytes) -> None:
        protocol = self._protocol
        transport = protocol.transport
        if transport is None or transport.is_closing():
            return  # the reader sees the close
        transport.write(data)
        if protocol.writing_paused:
            try:
                await protocol._drain_helper()  # private; what aiohttp's own WebSocketWriter awaits
            except ConnectionError:
                return

    def close(self) -> None:
        """Closes the connection (what was written is still delivered); it never goes back to the pool."""
        self._resp.close()
        gate, self._gate = self._gate, None
        if gate is not None:
            gate.free.release()
