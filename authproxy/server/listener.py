"""aiohttp's HTTP server, with our JSON error contract for what it answers itself.

aiohttp answers a request its parser refuses (bad request line, bad header, bad chunking, an
oversized head) and an exception that escapes a handler with its own text/plain body. Every
error the proxy produces is JSON with a stable code, so the runner here swaps in a request
handler whose `handle_error` writes ours. The message never repeats the request's bytes (they
may hold a credential); aiohttp still logs the refusal (as a warning, see logging._ClientFaults).
"""

from __future__ import annotations

import ssl
from pathlib import Path

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError, LineTooLong
from aiohttp.web_protocol import RequestHandler

from authproxy.config.schema import ListenerTLS
from authproxy.errors import AuthProxyError, BadRequest, ConfigError
from authproxy.proxy.headers import request_id_from
from authproxy.proxy.responses import error_response


class JsonErrorHandler(RequestHandler):
    """aiohttp's connection handler; only its own error answers change."""

    __slots__ = ()

    def handle_error(
        self,
        request: web.BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        super().handle_error(request, status, exc, message)  # logs; raises if a response was already started
        response = error_response(own_error(status, exc), request_id_from(request.headers))
        response.force_close()
        return response


def own_error(status: int, exc: BaseException | None) -> AuthProxyError:
    """Our error for what aiohttp would answer with `status` (never echoing the request)."""
    if isinstance(exc, LineTooLong):
        return BadRequest("the request line or a header is longer than limits.max_header_size allows")
    if isinstance(exc, HttpProcessingError) or 400 <= status < 500:
        reason = type(exc).__name__ if exc is not None else f"HTTP {status}"
        return BadRequest(f"the request is not valid HTTP/1.1 ({reason}); nothing was forwarded")
    return AuthProxyError("the proxy failed to handle this request; its log has the details under this request id")


class _JsonErrorServer(web.Server):
    def __call__(self) -> RequestHandler:
        handler = super().__call__()
        handler.__class__ = JsonErrorHandler  # same slots: only the class's methods change
        return handler


class JsonErrorRunner(web.AppRunner):
    """`web.AppRunner` whose connections answer parser and handler failures with our JSON errors."""

    async def _make_server(self) -> web.Server:
        server = await super()._make_server()
        server.__class__ = _JsonErrorServer
        return server


def listener_ssl(tls: ListenerTLS) -> ssl.SSLContext | None:
    if tls.cert_file is None:
        return None
    try:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(_expand(tls.cert_file), _expand(tls.key_file))  # type: ignore[arg-type]
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(
            [("tls", f"cannot load the certificate or key: {exc}; check they are PEM and match")]
        ) from None
    return context


def _expand(value: str | None) -> str | None:
    return None if value is None else str(Path(value).expanduser())
