"""A real OAuth authorization server on 127.0.0.1 for login tests: strict, recording, scriptable.

    async with AuthServer(redirect_uris=["http://127.0.0.1:PORT/callback"]) as server:
        ...   # point a route's authorize_url / token_url / revocation_url at server.*_url

`GET /authorize` checks response_type, client_id, the registered redirect_uri, state and an S256
PKCE challenge, then "the user" answers (`decision`: approve or deny) with a 302 to the
redirect URI. `POST /oauth/token` checks the client's auth method, and for a code: unused,
issued to this client and redirect_uri, and the verifier hashing to the challenge; refresh tokens
rotate (the old one is dead at once). `POST /oauth/revoke` (RFC 7009) records and kills tokens.
Every rejected check is answered with an OAuth error and also kept in `problems`.
Below the server: a hand-driven browser and config helpers shared by the login tests.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import secrets
import socket
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import parse_qsl, urlencode

import aiohttp
import yaml
from aiohttp import web
from multidict import CIMultiDict
from yarl import URL

from authproxy.config.load import parse_config
from authproxy.config.schema import Config
from tests.fakes.token_server import RecordedRequest


@dataclass
class IssuedCode:
    client_id: str
    redirect_uri: str
    challenge: str
    scope: str | None
    used: bool = False


@dataclass
class AuthServer:
    client_id: str = "cid"
    client_secret: str = "SENTINEL-client-secret"
    client_auth: Literal["client_secret_basic", "client_secret_post", "none"] = "client_secret_basic"
    redirect_uris: list[str] = field(default_factory=list)
    decision: Literal["approve", "deny"] = "approve"
    expires_in: int = 3600
    token_status: int | None = None  # force every token answer to this error status (e.g. 503)
    revoke_status: int = 200
    gate: asyncio.Event | None = None  # when set to an unset Event: refreshes are held (after rotating) until set
    authorize_requests: list[dict[str, str]] = field(default_factory=list)
    token_requests: list[RecordedRequest] = field(default_factory=list)
    revocations: list[RecordedRequest] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    codes: dict[str, IssuedCode] = field(default_factory=dict)
    refresh_tokens: dict[str, bool] = field(default_factory=dict)  # token -> still valid
    access_tokens: list[str] = field(default_factory=list)
    scopes: dict[str, str | None] = field(default_factory=dict)  # every issued token -> the scope it carries
    grantable: set[str] | None = None  # scopes this client may have; others are dropped silently (as some do)
    base_url: str = ""
    _runner: web.AppRunner | None = None

    @property
    def authorize_url(self) -> str:
        return self.base_url + "/authorize"

    @property
    def token_url(self) -> str:
        return self.base_url + "/oauth/token"

    @property
    def revocation_url(self) -> str:
        return self.base_url + "/oauth/revoke"

    @property
    def secrets_seen(self) -> list[str]:
        """Everything secret that crossed this server: codes, verifiers, refresh tokens, the client secret."""
        found = [self.client_secret, *self.codes, *self.refresh_tokens]
        found += [r.params.get("code_verifier", "") for r in self.token_requests]
        return [s for s in found if s]

    async def __aenter__(self) -> AuthServer:
        app = web.Application()
        app.router.add_get("/authorize", self._authorize)
        app.router.add_post("/oauth/token", self._token)
        app.router.add_post("/oauth/revoke", self._revoke)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        host, port = self._runner.addresses[0][:2]
        self.base_url = f"http://{host}:{port}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    # -- endpoints ---------------------------------------------------------------------------------

    async def _authorize(self, request: web.Request) -> web.Response:
        q = dict(request.query)
        self.authorize_requests.append(q)
        redirect_uri = q.get("redirect_uri", "")
        if q.get("client_id") != self.client_id or redirect_uri not in self.redirect_uris:
            self.problems.append(f"authorize: unknown client or unregistered redirect_uri {redirect_uri!r}")
            return web.Response(status=400, text="unknown client or redirect_uri")  # never redirect there
        state = q.get("state", "")
        checks = {
            "response_type must be code": q.get("response_type") == "code",
            "state missing": len(state) >= 16,
            "PKCE must be S256": q.get("code_challenge_method") == "S256" and len(q.get("code_challenge", "")) == 43,
        }
        failed = [what for what, ok in checks.items() if not ok]
        if failed:
            self.problems += [f"authorize: {what}" for what in failed]
            return _redirect(redirect_uri, error="invalid_request", state=state)
        if self.decision == "deny":
            return _redirect(redirect_uri, error="access_denied", error_description="The user said no", state=state)
        code = "code-" + secrets.token_urlsafe(12)
        self.codes[code] = IssuedCode(self.client_id, redirect_uri, q["code_challenge"], q.get("scope"))
        return _redirect(redirect_uri, code=code, state=state)

    async def _token(self, request: web.Request) -> web.Response:
        record = await _record(request)
        self.token_requests.append(record)
        if self.token_status is not None:
            return _error("temporarily_unavailable", "scripted failure", status=self.token_status)
        problem = self._client_auth_problem(record)
        if problem:
            self.problems.append(f"token: {problem}")
            return _error("invalid_client", problem, status=401)
        params = record.params
        if params.get("grant_type") == "authorization_code":
            return self._exchange(params)
        if params.get("grant_type") == "refresh_token":
            presented = params.get("refresh_token", "")
            if not self.refresh_tokens.get(presented):
                return _error("invalid_grant", "refresh token unknown, revoked or already used")
            self.refresh_tokens[presented] = False  # rotation: each refresh token works once
            if self.gate is not None:
                await self.gate.wait()
            return self._issue(self.scopes.get(presented))
        return _error("unsupported_grant_type", "only authorization_code and refresh_token")

    def _exchange(self, params: dict[str, str]) -> web.Response:
        issued = self.codes.get(params.get("code", ""))
        verifier = params.get("code_verifier", "")
        challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
        checks = {
            "unknown code": issued is not None,
            "code already used": issued is not None and not issued.used,
            "redirect_uri differs from the authorize request": issued is not None
            and params.get("redirect_uri") == issued.redirect_uri,
            "code_verifier does not match the challenge": issued is not None and challenge == issued.challenge,
        }
        failed = [what for what, ok in checks.items() if not ok]
        if issued is not None:
            issued.used = True
        if failed:
            self.problems += [f"token: {what}" for what in failed]
            return _error("invalid_grant", "; ".join(failed))
        assert issued is not None
        return self._issue(issued.scope)

    def _issue(self, scope: str | None) -> web.Response:
        """New tokens; a refreshed chain keeps the scope its login was granted (RFC 6749 §6)."""
        if scope is not None and self.grantable is not None:
            scope = " ".join(s for s in scope.split() if s in self.grantable)
        access = f"at-{len(self.access_tokens) + 1}"
        refresh = f"rt-{len(self.refresh_tokens) + 1}"
        self.access_tokens.append(access)
        self.refresh_tokens[refresh] = True
        self.scopes[access] = self.scopes[refresh] = scope
        body = {"access_token": access, "refresh_token": refresh, "token_type": "bearer", "expires_in": self.expires_in}
        if scope is not None:
            body["scope"] = scope
        return web.json_response(body)

    async def _revoke(self, request: web.Request) -> web.Response:
        record = await _record(request)
        self.revocations.append(record)
        problem = self._client_auth_problem(record)
        if problem:
            self.problems.append(f"revoke: {problem}")
            return _error("invalid_client", problem, status=401)
        if self.revoke_status != 200:
            return _error("temporarily_unavailable", "scripted failure", status=self.revoke_status)
        token = record.params.get("token", "")
        if token in self.refresh_tokens:
            self.refresh_tokens[token] = False
        return web.Response(status=200)

    def _client_auth_problem(self, record: RecordedRequest) -> str | None:
        basic, params = record.basic_auth(), record.params
        if self.client_auth == "client_secret_basic":
            if basic != (self.client_id, self.client_secret):
                return "expected client_secret_basic with the right id and secret"
            if "client_secret" in params:
                return "client_secret must not also be in the body"
        elif self.client_auth == "client_secret_post":
            if basic is not None or (params.get("client_id"), params.get("client_secret")) != (
                self.client_id,
                self.client_secret,
            ):
                return "expected client_secret_post with the right id and secret"
        elif params.get("client_id") != self.client_id or "client_secret" in params or basic is not None:
            return "expected a public client: client_id only"
        return None


async def _record(request: web.Request) -> RecordedRequest:
    body = await request.read()
    record = RecordedRequest(request.method, request.path, CIMultiDict(request.headers), body)
    if request.content_type == "application/x-www-form-urlencoded":
        record.form = dict(parse_qsl(body.decode(), keep_blank_values=True))
    return record


def _redirect(uri: str, **params: str) -> web.Response:
    sep = "&" if "?" in uri else "?"
    return web.Response(status=302, headers={"Location": uri + sep + urlencode(params)})


def _error(error: str, description: str, *, status: int = 400) -> web.Response:
    return web.json_response({"error": error, "error_description": description}, status=status)


# -- helpers for the login tests ---------------------------------------------------------------


def free_port() -> int:
    """A loopback port nobody listens on right now (for a redirect URI that must name its port)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def login_raw(server: AuthServer, upstream: str, redirect_uri: str, store: dict[str, Any], **auth: Any) -> dict:
    """A one-route config (as YAML data) logging in at the fake server with the server's client auth."""
    route_auth = {
        "grant": "authorization_code",
        "authorize_url": server.authorize_url,
        "token_url": server.token_url,
        "client_id": server.client_id,
        "client_secret": server.client_secret,
        "client_auth": server.client_auth,
        "redirect_uri": redirect_uri,
        "scope": "offline_access openid",
        **auth,
    }
    if server.client_auth == "none":
        route_auth.pop("client_secret")
    return {"store": store, "routes": {"api": {"upstream": upstream, "auth": route_auth}}}


def parse(raw: dict) -> Config:
    return parse_config(yaml.safe_dump(raw), env={})


async def browse(session: aiohttp.ClientSession, url: str, *, stop_at: str | None = None) -> tuple[int, str, str]:
    """Follow redirects by hand like a browser; stop before requesting a URL starting with `stop_at`.

    Returns (status, body text, last URL); a stop gives (0, "", the URL not requested).
    """
    for _ in range(10):
        if stop_at is not None and url.startswith(stop_at):
            return 0, "", url
        async with session.get(url, allow_redirects=False) as resp:
            if resp.status in (301, 302, 303, 307, 308):
                url = str(URL(url).join(URL(resp.headers["Location"])))
                continue
            return resp.status, await resp.text(), url
    raise AssertionError("redirect loop")


class FakeBrowser:
    """What `open_browser` hands the URL to: the test then browses it."""

    def __init__(self) -> None:
        self.urls: asyncio.Queue[str] = asyncio.Queue()

    def __call__(self, url: str) -> bool:
        self.urls.put_nowait(url)
        return True
