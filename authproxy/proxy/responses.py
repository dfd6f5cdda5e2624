"""The responses the proxy writes itself: the JSON error body, and hanging up after an answer."""

from __future__ import annotations

import math

from aiohttp import web

from authproxy.errors import AuthProxyError, BadRequest, ClientTooSlow
from authproxy.proxy.headers import REQUEST_ID


async def hang_up_after(request: web.Request, response: web.Response) -> web.Response:
    """Send `response`, then close the connection at once.

    For a client too slow to finish its body: aiohttp would otherwise linger up to 10 s reading
    the rest of it before closing. Closing the transport still flushes what was written.
    """
    await response.prepare(request)
    await response.write_eof()
    if request.transport is not None:
        request.transport.close()
    return response


def error_response(err: AuthProxyError, request_id: str) -> web.Response:
    """The JSON error body every client-facing failure uses."""
    headers = {REQUEST_ID: request_id}
    if err.retry_after is not None:
        headers["Retry-After"] = str(max(1, math.ceil(err.retry_after)))
    response = web.json_response(err.body(request_id), status=err.status, headers=headers)
    if isinstance(err, ClientTooSlow | BadRequest):
        response.force_close()  # the rest of the request is unread: the connection cannot be reused
    return response
