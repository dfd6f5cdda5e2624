"""A real aiohttp upstream on 127.0.0.1 that records what it received and misbehaves on request.

Behaviour is picked by a keyword segment anywhere in the path (so it works under any base
path): status/N, cookies, redirect, gzip, big/N, sink, reset/cl, reset/chunked, hang,
chunks/N, auth/TOKEN; anything else echoes the request body back.
"""

from __future__ import annotations

import asyncio
import gzip
import hashlib
from dataclasses import dataclass, field

from aiohttp import WSMsgType, web
from multidict import CIMultiDict

BLOCK = bytes(range(256)) * 256  # 64 KiB deterministic pattern


def pattern_bytes(n: int):
    """Yield exactly n bytes of the deterministic pattern, in 64 KiB blocks."""
    while n > 0:
        chunk = BLOCK[: min(n, len(BLOCK))]
        n -= len(chunk)
        yield chunk


def pattern_sha256(n: int) -> str:
    digest = hashlib.sha256()
    for chunk in pattern_bytes(n):
        digest.update(chunk)
    return digest.hexdigest()


@dataclass
class Seen:
    method: str
    raw_path: str
    headers: CIMultiDict[str]
    body: bytes
    version: tuple[int, int] = (1, 1)
    peer: object = None  # the proxy's (address, port) for this request: one per upstream connection


@dataclass
class FakeUpstream:
    seen: list[Seen] = field(default_factory=list)
    cancelled: int = 0
    cancelled_event: asyncio.Event = field(default_factory=asyncio.Event)
    hang_started: asyncio.Event = field(default_factory=asyncio.Event)
    chunk_gate: asyncio.Queue[None] = field(default_factory=asyncio.Queue)
    valid_tokens: set[str] = field(default_factory=set)
    ws_close_codes: list[int | None] = field(default_factory=list)
    url: str = ""
    _runner: web.AppRunner | None = None

    async def start(self) -> FakeUpstream:
        app = web.Application(client_max_size=1024**3)
        app.router.add_route("*", "/{tail:.*}", self.handle)
        self._runner = web.AppRunner(app, handler_cancellation=True, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        host, port = self._runner.addresses[0][:2]
        self.url = f"http://{host}:{port}"
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    @property
    def last(self) -> Seen:
        return self.seen[-1]

    async def handle(self, request: web.Request) -> web.StreamResponse:
        parts = request.path.split("/")
        if "sink" in parts:
            return await self._sink(request)
        if "ws" in parts:
            return await self._websocket(request)
        body = await request.read()
        peer = request.transport.get_extra_info("peername") if request.transport else None
        self.seen.append(
            Seen(request.method, request.raw_path, CIMultiDict(request.headers), body, request.version, peer)
        )
        for i, part in enumerate(parts):
            arg = parts[i + 1] if i + 1 < len(parts) else ""
            handler = getattr(self, f"_do_{part}", None)
            if handler is not None:
                return await handler(request, arg)
        return web.Response(
            body=body,
            headers={
                "X-Echo-Method": request.method,
                "Content-Type": request.headers.get("Content-Type", "application/octet-stream"),
            },
        )

    async def _websocket(self, request: web.Request) -> web.StreamResponse:
        """Echo server: `close:CODE` closes with CODE; pings are answered (autoping); 401 for bad tokens."""
        self.seen.append(Seen(request.method, request.raw_path, CIMultiDict(request.headers), b""))
        token = request.headers.get("Authorization", "").removeprefix("Bearer ")
        if self.valid_tokens and token not in self.valid_tokens:
            return web.json_response({"error": "invalid_token"}, status=401)
        ws = web.WebSocketResponse(protocols=("v2", "v1"))
        await ws.prepare(request)
        async for msg in ws:
            if msg.type == WSMsgType.TEXT and msg.data.startswith("close:"):
                await ws.close(code=int(msg.data[6:]), message=b"bye")
            elif msg.type == WSMsgType.TEXT:
                await ws.send_str(f"echo:{msg.data}")
            elif msg.type == WSMsgType.BINARY:
                await ws.send_bytes(msg.data[::-1])
        self.ws_close_codes.append(ws.close_code)
        return ws

    async def _sink(self, request: web.Request) -> web.Response:
        digest, size = hashlib.sha256(), 0
        async for chunk in request.content.iter_any():
            digest.update(chunk)
            size += len(chunk)
        self.seen.append(Seen(request.method, request.raw_path, CIMultiDict(request.headers), b""))
        return web.json_response({"size": size, "sha256": digest.hexdigest()})

    async def _do_status(self, request: web.Request, arg: str) -> web.StreamResponse:
        status = int(arg)
        if status in (204, 304) or request.method == "HEAD":
            return web.Response(status=status, headers={"X-Status": arg, "ETag": '"v1"'})
        return web.Response(status=status, text=f"status {status}", headers={"X-Status": arg})

    async def _do_cookies(self, request: web.Request, arg: str) -> web.Response:
        headers = CIMultiDict(
            [("Set-Cookie", "a=1; Path=/"), ("Set-Cookie", "b=2; Path=/"), ("X-Multi", "one"), ("X-Multi", "two")]
        )
        return web.Response(text="cookies", headers=headers)

    async def _do_redirect(self, request: web.Request, arg: str) -> web.Response:
        targets = {
            "abs": f"{self.url}{request.path.split('/redirect')[0]}/landed?x=1",
            "path": f"{request.path.split('/redirect')[0]}/landed",
            "elsewhere": "https://example.org/somewhere",
        }
        return web.Response(status=302, headers={"Location": targets[arg or "abs"]})

    async def _do_gzip(self, request: web.Request, arg: str) -> web.Response:
        raw = gzip.compress(b"hello compressed world " * 100)
        return web.Response(body=raw, headers={"Content-Encoding": "gzip", "Content-Type": "text/plain"})

    async def _do_big(self, request: web.Request, arg: str) -> web.StreamResponse:
        size = int(arg)
        response = web.StreamResponse(headers={"Content-Type": "application/octet-stream"})
        response.content_length = size
        await response.prepare(request)
        for chunk in pattern_bytes(size):
            await response.write(chunk)
        await response.write_eof()
        return response

    async def _do_reset(self, request: web.Request, arg: str) -> web.StreamResponse:
        response = web.StreamResponse()
        if arg == "cl":
            response.content_length = 100_000
        else:
            response.enable_chunked_encoding()
        await response.prepare(request)
        await response.write(b"x" * 1000)
        assert request.transport is not None
        request.transport.abort()
        return response

    async def _do_hang(self, request: web.Request, arg: str) -> web.StreamResponse:
        self.hang_started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            self.cancelled += 1
            self.cancelled_event.set()
            raise
        raise AssertionError("unreachable")

    async def _do_chunks(self, request: web.Request, arg: str) -> web.StreamResponse:
        """Send N chunks, each only after the test puts an item on `chunk_gate`."""
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        for i in range(int(arg)):
            await self.chunk_gate.get()
            await response.write(f"data: {i}\n\n".encode())
        await response.write_eof()
        return response

    async def _do_auth(self, request: web.Request, arg: str, status: int = 401) -> web.Response:
        """`status` unless the bearer token is in `valid_tokens`; then echo which token was used."""
        header = request.headers.get("Authorization", "")
        token = header.removeprefix("Bearer ")
        if token not in self.valid_tokens:
            return web.json_response(
                {"error": "invalid_token"}, status=status, headers={"WWW-Authenticate": 'Bearer error="invalid_token"'}
            )
        return web.json_response({"token": token, "body_bytes": len(await request.read())})

    async def _do_auth403(self, request: web.Request, arg: str) -> web.Response:
        return await self._do_auth(request, arg, status=403)

    async def _do_scope(self, request: web.Request, arg: str) -> web.Response:
        """403 insufficient_scope: a fresh token would not help."""
        return web.json_response(
            {"error": "insufficient_scope"},
            status=403,
            headers={"WWW-Authenticate": 'Bearer error="insufficient_scope", scope="admin"'},
        )
