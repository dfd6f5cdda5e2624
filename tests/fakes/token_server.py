"""A real OAuth token endpoint on 127.0.0.1 that records what it receives and answers by script.

    async with TokenServer(clock=clock) as server:
        server.script.append(Reply.error("invalid_client", status=401))
        ...
        assert server.requests[0].params == {"grant_type": "client_credentials", ...}

`script` entries (a `Reply` or a handler `request -> Reply`, sync or async) are used once each,
in order; when it is empty `default` answers (by default: a fresh token `at-1`, `at-2`, ...).
Set `gate` to an unset `asyncio.Event` to hold every answer until the test sets it.
"""

from __future__ import annotations

import asyncio
import base64
import inspect
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, unquote_plus

from aiohttp import web
from multidict import CIMultiDict

from authproxy.clock import Clock


@dataclass
class RecordedRequest:
    method: str
    path: str
    headers: CIMultiDict[str]
    body: bytes
    form: dict[str, str] | None = None
    json: Any = None
    at: float | None = None  # clock.monotonic() when it arrived, if the server has a clock

    @property
    def params(self) -> dict[str, Any]:
        """The parsed body: form fields or the JSON object."""
        if self.form is not None:
            return self.form
        return self.json if isinstance(self.json, dict) else {}

    @property
    def content_type(self) -> str:
        return self.headers.get("Content-Type", "")

    def basic_auth(self) -> tuple[str, str] | None:
        """(client_id, client_secret) from a Basic header, decoded as RFC 6749 §2.3.1 says."""
        value = self.headers.get("Authorization", "")
        if not value.startswith("Basic "):
            return None
        user, _, password = base64.b64decode(value[6:]).decode().partition(":")
        return unquote_plus(user), unquote_plus(password)


@dataclass
class Reply:
    status: int = 200
    json: Any = None
    body: bytes | None = None
    content_type: str | None = None
    headers: dict[str, str] = field(default_factory=dict)

    @classmethod
    def token(
        cls,
        access_token: str = "at",
        expires_in: Any = 3600,
        *,
        refresh_token: str | None = None,
        token_type: str | None = "Bearer",
        **extra: Any,
    ) -> Reply:
        data: dict[str, Any] = {"access_token": access_token, **extra}
        if expires_in is not None:
            data["expires_in"] = expires_in
        if token_type is not None:
            data["token_type"] = token_type
        if refresh_token is not None:
            data["refresh_token"] = refresh_token
        return cls(json=data)

    @classmethod
    def error(cls, error: str, description: str | None = None, *, status: int = 400) -> Reply:
        data = {"error": error} if description is None else {"error": error, "error_description": description}
        return cls(status=status, json=data)

    @classmethod
    def html(cls, status: int = 502) -> Reply:
        page = b"<html><body><h1>502 Bad Gateway</h1><p>nginx</p></body></html>"
        return cls(status=status, body=page, content_type="text/html")

    @classmethod
    def text(cls, body: bytes, *, status: int = 200, content_type: str = "text/plain") -> Reply:
        return cls(status=status, body=body, content_type=content_type)


Handler = Callable[[RecordedRequest], "Reply | Awaitable[Reply]"]


class RefreshRotation:
    """Rotating refresh tokens: each use returns a new one; reusing an old one is invalid_grant."""

    def __init__(self, server: TokenServer, initial: str, expires_in: Any = 3600) -> None:
        self.server = server
        self.valid = initial
        self.used: list[str] = []
        self.reused: list[str] = []  # refresh tokens presented again after being rotated away
        self.expires_in = expires_in

    def __call__(self, request: RecordedRequest) -> Reply:
        presented = request.params.get("refresh_token")
        if presented != self.valid:
            if presented in self.used:
                self.reused.append(presented)
            return Reply.error("invalid_grant", "refresh token is invalid or was already used")
        self.used.append(presented)
        self.valid = f"rt-{len(self.used)}"
        return Reply.token(self.server.next_access_token(), self.expires_in, refresh_token=self.valid)


class TokenServer:
    def __init__(self, *, path: str = "/oauth/token", clock: Clock | None = None) -> None:
        self.path = path
        self.clock = clock
        self.requests: list[RecordedRequest] = []
        self.script: list[Reply | Handler] = []
        self.default: Handler = self.issue
        self.gate: asyncio.Event | None = None
        self.in_flight = 0
        self.max_in_flight = 0
        self.issued = 0
        self.expires_in: Any = 3600
        self._arrived = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self.base_url = ""

    @property
    def url(self) -> str:
        return self.base_url + self.path

    async def start(self) -> TokenServer:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        host, port = self._runner.addresses[0][:2]
        self.base_url = f"http://{host}:{port}"
        return self

    async def close(self) -> None:
        if self.gate is not None:
            self.gate.set()
        if self._runner is not None:
            await self._runner.cleanup()

    async def __aenter__(self) -> TokenServer:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def next_access_token(self) -> str:
        self.issued += 1
        return f"at-{self.issued}"

    def issue(self, request: RecordedRequest) -> Reply:
        """The default answer: a new access token with `expires_in` (echoing no refresh token)."""
        return Reply.token(self.next_access_token(), self.expires_in)

    def rotate_refresh_tokens(self, initial: str = "rt-0", expires_in: Any = 3600) -> RefreshRotation:
        rotation = RefreshRotation(self, initial, expires_in)
        self.default = rotation
        return rotation

    async def wait_for_requests(self, count: int, timeout: float = 5.0) -> None:
        """Until `count` requests have arrived (the timeout only guards against a hung test)."""
        async with asyncio.timeout(timeout):
            while len(self.requests) < count:
                self._arrived.clear()
                await self._arrived.wait()

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        record = RecordedRequest(
            request.method,
            request.path,
            CIMultiDict(request.headers),
            body,
            at=self.clock.monotonic() if self.clock is not None else None,
        )
        if request.content_type == "application/x-www-form-urlencoded":
            record.form = dict(parse_qsl(body.decode(), keep_blank_values=True))
        elif request.content_type == "application/json":
            record.json = json.loads(body)
        self.requests.append(record)
        self._arrived.set()
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            if self.gate is not None:
                await self.gate.wait()
            step = self.script.pop(0) if self.script else self.default
            reply = step if isinstance(step, Reply) else step(record)
            if inspect.isawaitable(reply):
                reply = await reply
        finally:
            self.in_flight -= 1
        return _response(reply)


def _response(reply: Reply) -> web.Response:
    if reply.body is not None:
        return web.Response(
            status=reply.status, body=reply.body, content_type=reply.content_type, headers=reply.headers
        )
    text = json.dumps(reply.json) if reply.json is not None else ""
    return web.Response(
        status=reply.status, text=text, content_type=reply.content_type or "application/json", headers=reply.headers
    )
