"""The loopback callback server of `authproxy login`: receives the provider's one redirect.

It listens on the route's `redirect_uri` (both 127.0.0.1 and ::1 for `localhost`), hands the
first redirect carrying a code or an error to the waiting login, and answers the browser with
the login's outcome once it is known. A port it cannot take is a clear LoginError.
"""

from __future__ import annotations

import asyncio
import errno
import html
from typing import TextIO
from urllib.parse import urlsplit

from aiohttp import web

from authproxy.config.checks import is_loopback
from authproxy.login.flow import LoginAttempt, LoginError, is_callback
from authproxy.shell import shell_quote

PAGE = """<!doctype html><meta charset="utf-8"><title>authproxy login</title>
<body style="font-family:sans-serif;max-width:40em;margin:4em auto"><h1>{title}</h1><p>{text}</p></body>"""


class CallbackServer:
    """Serves the redirect URI for one login: the first redirect wins, the page shows the outcome."""

    def __init__(self, attempt: LoginAttempt) -> None:
        parts = urlsplit(attempt.redirect_uri)
        self.host = parts.hostname or "localhost"
        self.port = parts.port or 80
        self.path = parts.path or "/"
        loop = asyncio.get_running_loop()
        self.redirect: asyncio.Future[dict[str, str]] = loop.create_future()
        self._outcome: asyncio.Future[str | None] = loop.create_future()
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        hosts = ["127.0.0.1", "::1"] if self.host == "localhost" else [self.host]
        for i, host in enumerate(hosts):
            try:
                await web.TCPSite(self._runner, host, self.port).start()
            except OSError:
                if i == 0:  # the first address is required; ::1 for `localhost` is a bonus
                    await self._runner.cleanup()
                    raise

    def finish(self, error: str | None) -> None:
        """Tell the waiting browser tab how the login ended (None: success)."""
        if not self._outcome.done():
            self._outcome.set_result(error)

    async def close(self) -> None:
        self.finish("the login ended")
        if self._runner is not None:
            await self._runner.cleanup()

    async def _handle(self, request: web.Request) -> web.Response:
        if request.path != self.path:
            return web.Response(status=404, text="not the login callback")
        params = dict(request.query)
        if not is_callback(params):
            return _page(400, "Not a login redirect", "This address only receives the provider's redirect.")
        if self.redirect.done():
            return _page(409, "Already handled", "This login has already received its redirect; close this tab.")
        self.redirect.set_result(params)
        error = await asyncio.shield(self._outcome)
        if error is None:
            return _page(200, "Logged in", "authproxy has saved the tokens. You can close this tab.")
        return _page(400, "Login failed", error)


def _page(status: int, title: str, text: str) -> web.Response:
    body = PAGE.format(title=html.escape(title), text=html.escape(text))
    return web.Response(status=status, text=body, content_type="text/html", headers={"Cache-Control": "no-store"})


async def start_callback(
    attempt: LoginAttempt, *, pasting: bool, out: TextIO, proxy_listen: str | None
) -> CallbackServer | None:
    """The callback server, or None when only pasting can work (then a warning, not a failure)."""
    parts = urlsplit(attempt.redirect_uri)
    problem = None
    if parts.scheme != "http" or not is_loopback(parts.hostname or ""):
        problem = (
            f"the redirect URI {attempt.redirect_uri} is not a plain http loopback address, so authproxy cannot "
            "receive the redirect itself"
        )
    else:
        server = CallbackServer(attempt)
        try:
            await server.start()
            return server
        except OSError as exc:
            problem = _bind_problem(exc, server, attempt.route, proxy_listen)
    if pasting:
        print(f"note: {problem}; paste the redirect URL instead.", file=out)
        return None
    fix = (
        "use --no-browser and paste the redirect URL, or set auth.redirect_uri to a free loopback port "
        "(e.g. http://localhost:8765/callback) and register it with the provider"
    )
    raise LoginError(f"{problem}; {fix}", route=attempt.route)


def _bind_problem(exc: OSError, server: CallbackServer, route: str, proxy_listen: str | None) -> str:
    where = f"{server.host}:{server.port}"
    if exc.errno == errno.EADDRINUSE:
        text = f"port {server.port} of the redirect URI is already in use by another program ({where})"
        if proxy_listen and proxy_listen.rsplit(":", 1)[-1] == str(server.port):
            web_login = shell_quote(f"http://{proxy_listen}/-/login/{route}")
            text += f"; if that is the running proxy, open {web_login} instead"
        return text
    if exc.errno == errno.EACCES:
        return f"no permission to listen on {where} (ports below 1024 need root)"
    return f"cannot listen on {where} ({exc.strerror or exc})"
