"""The upstream HTTP/1.1 client for proxied requests: asyncio protocols, a keep-alive pool, llhttp.

Why not aiohttp's ClientSession: measured here (bench/, same machine, same run), its per-request
machinery (ClientRequest, connector, timers, ClientResponse, StreamReader) cost about 80 us of the
~145 us a minimal aiohttp proxy spends per small request; this client does the same exchange in a
fraction of that, so every authproxy feature together still costs less than that overhead. The
response is parsed by llhttp (Node.js's parser, through httptools); bytes pass through untouched
(no decompression, no added headers). Websockets and token requests still use aiohttp's client.

`connection.py` holds one connection's exchange, `pool.py` the keep-alive pool. Failures raise
`UpstreamConnectError` (502 upstream_unreachable), `UpstreamTimeoutError` (504) or
`UpstreamBrokenError` (502 upstream_error, or a cut body).
"""

from authproxy.upstream.connection import (
    HIGH_WATER,
    UnsafeHeaderError,
    UpstreamBrokenError,
    UpstreamConnectError,
    UpstreamResponse,
    UpstreamTimeoutError,
)
from authproxy.upstream.pool import Endpoint, UpstreamPool

__all__ = [
    "HIGH_WATER",
    "Endpoint",
    "UnsafeHeaderError",
    "UpstreamBrokenError",
    "UpstreamConnectError",
    "UpstreamPool",
    "UpstreamResponse",
    "UpstreamTimeoutError",
]
