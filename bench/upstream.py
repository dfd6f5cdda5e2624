#!/usr/bin/env python3
"""A fast local upstream for the benchmark: as little work per request as aiohttp allows.

It is the `direct` target and the upstream behind every proxy target, so its own cost is
part of every number; it uses aiohttp's low-level `web.Server` (no router, no middlewares,
no access log) and uvloop when installed.

    GET  /json       a fixed ~100-byte JSON body
    GET  /bytes/N    N bytes, streamed in 256 KiB chunks (Content-Length set)
    POST /sink       reads and discards the request body, answers {"received": <bytes>}
    POST /hash       reads the request body, answers {"received": <bytes>, "sha256": <hex>}
    GET  /auth       echoes the Authorization header it received (which token a proxy injected)

Any path prefix before these (e.g. `/api/json`) is ignored, so proxies with or without
prefix stripping see the same endpoints. Binds 127.0.0.1:PORT (0 = ephemeral) and prints
one JSON line `{"event": "listening", "url": ...}` on stdout when ready.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import signal
import sys

from aiohttp import web

CHUNK = 256 * 1024
JSON_BODY = json.dumps(
    {"id": 12345, "name": "benchmark item", "price": 99.5, "tags": ["a", "b", "c"], "ok": True, "pad": "x" * 10}
).encode()
_CHUNK_DATA = b"\0" * CHUNK


async def handle(request: web.BaseRequest) -> web.StreamResponse:
    """Dispatch on the last path segments; cheap string checks only."""
    path = request.path
    if path.endswith("/json"):
        return web.Response(body=JSON_BODY, content_type="application/json")
    if path.endswith("/auth"):
        return web.Response(text=request.headers.get("Authorization", ""))
    if path.endswith("/sink"):
        received = 0
        while chunk := await request.content.readany():
            received += len(chunk)
        return web.json_response({"received": received})
    if path.endswith("/hash"):  # the soak checks that no body was altered on the way
        digest, received = hashlib.sha256(), 0
        while chunk := await request.content.readany():
            digest.update(chunk)
            received += len(chunk)
        return web.json_response({"received": received, "sha256": digest.hexdigest()})
    _, sep, size = path.rpartition("/bytes/")
    if sep and size.isdigit():
        return await stream_bytes(request, int(size))
    return web.Response(status=404, text="unknown endpoint\n")


async def stream_bytes(request: web.BaseRequest, size: int) -> web.StreamResponse:
    """Stream `size` zero bytes from one preallocated chunk, never holding more than that."""
    response = web.StreamResponse(headers={"Content-Type": "application/octet-stream"})
    response.content_length = size
    await response.prepare(request)
    view = memoryview(_CHUNK_DATA)
    remaining = size
    while remaining > 0:
        n = min(remaining, CHUNK)
        await response.write(view[:n])
        remaining -= n
    await response.write_eof()
    return response


async def serve(port: int) -> None:
    server = web.Server(handle)
    runner = web.ServerRunner(server, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", port, backlog=2048)
    await site.start()
    bound = runner.addresses[0][1]
    print(json.dumps({"event": "listening", "url": f"http://127.0.0.1:{bound}"}), flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await runner.cleanup()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (default: ephemeral)")
    args = parser.parse_args()
    try:
        import uvloop
    except ImportError:
        asyncio.run(serve(args.port))
    else:
        uvloop.run(serve(args.port))
    sys.exit(0)


if __name__ == "__main__":
    main()
