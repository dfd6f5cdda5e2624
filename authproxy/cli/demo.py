"""`authproxy demo`: a token server, an upstream that demands its tokens, and the proxy in front.

Everything runs in one process on loopback, so a newcomer sees tokens fetched, injected and
renewed without any provider account.
"""

from __future__ import annotations

import asyncio
import secrets

import structlog
from aiohttp import web

from authproxy.clock import Clock, SystemClock
from authproxy.config.load import parse_config
from authproxy.credentials.client_auth import basic_authorization
from authproxy.server.app import build_app
from authproxy.server.serve import serve
from authproxy.shell import shell_quote

DEMO_CLIENT_ID = "demo-client"
DEMO_CLIENT_SECRET = "demo-secret"  # a throwaway credential that exists only inside this process
DEMO_API_KEY = "demo-api-key"

log = structlog.get_logger("authproxy.demo")


class DemoProvider:
    """A token endpoint (client_credentials, Basic auth) and an API that accepts only its live tokens."""

    def __init__(self, clock: Clock, token_lifetime: int) -> None:
        self.clock = clock
        self.token_lifetime = token_lifetime
        self.issued: dict[str, float] = {}  # token -> expiry
        self.token_requests = 0

    def token_app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/oauth/token", self.token)
        return app

    def api_app(self) -> web.Application:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self.api)
        return app

    async def token(self, request: web.Request) -> web.Response:
        form = await request.post()
        if request.headers.get("Authorization") != basic_authorization(DEMO_CLIENT_ID, DEMO_CLIENT_SECRET):
            return web.json_response({"error": "invalid_client"}, status=401)
        if form.get("grant_type") != "client_credentials":
            return web.json_response({"error": "unsupported_grant_type"}, status=400)
        self.token_requests += 1
        token = f"demo-token-{self.token_requests}-{secrets.token_hex(4)}"
        self.issued[token] = self.clock.now() + self.token_lifetime
        return web.json_response({"access_token": token, "token_type": "bearer", "expires_in": self.token_lifetime})

    async def api(self, request: web.Request) -> web.Response:
        token = request.headers.get("Authorization", "").removeprefix("Bearer ")
        expiry = self.issued.get(token)
        if expiry is None or self.clock.now() >= expiry:
            return web.json_response(
                {"error": "invalid_token"}, status=401, headers={"WWW-Authenticate": 'Bearer error="invalid_token"'}
            )
        if request.headers.get("x-api-key") != DEMO_API_KEY:
            return web.json_response({"error": "missing x-api-key"}, status=403)
        body = await request.read()
        return web.json_response(
            {
                "you_sent": {"method": request.method, "path": request.raw_path, "body_bytes": len(body)},
                "authorized_with": f"token #{token.split('-')[2]}, valid {expiry - self.clock.now():.0f} s more",
                "headers_seen": sorted(h for h in request.headers if h.lower() not in ("authorization", "x-api-key")),
            }
        )


async def _start(app: web.Application) -> tuple[web.AppRunner, str]:
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    host, port = runner.addresses[0][:2]
    return runner, f"http://{host}:{port}"


def demo_config_text(token_url: str, api_url: str, token_lifetime: int) -> str:
    return f"""
log: {{level: info}}
shutdown_timeout: 2
routes:
  demo:
    upstream: {api_url}
    headers: {{x-api-key: {DEMO_API_KEY}}}
    auth:
      grant: client_credentials
      token_url: {token_url}
      client_auth: client_secret_basic
      client_id: {DEMO_CLIENT_ID}
      client_secret: {DEMO_CLIENT_SECRET}
      min_leeway: {max(1, token_lifetime // 10)}
"""


async def run_demo(host: str, port: int, token_lifetime: int = 30, stop: asyncio.Event | None = None) -> None:
    """Start the demo provider and a proxy for it on host:port; serve until a signal or `stop`."""
    clock = SystemClock()
    provider = DemoProvider(clock, token_lifetime)
    token_runner, token_base = await _start(provider.token_app())
    api_runner, api_url = await _start(provider.api_app())
    try:
        config = parse_config(demo_config_text(f"{token_base}/oauth/token", api_url, token_lifetime), source="demo")
        base = f"http://{host}:{port}"
        print(
            f"\nauthproxy demo: a token server at {shell_quote(token_base)} and an API at {shell_quote(api_url)}\n"
            f"that accepts only its own {token_lifetime}-second tokens, and the proxy in front at "
            f"{shell_quote(base)}.\n"
            "Try (no credentials in the client):\n"
            f"  curl -s {shell_quote(base + '/demo/hello?x=1')}\n"
            f"  curl -s -X POST --data 'some body' {shell_quote(base + '/demo/orders')}\n"
            f"  curl -s {shell_quote(base + '/-/health')}\n"
            "Watch the log: tokens are renewed in the background before they expire. Ctrl-C stops.\n",
            flush=True,
        )
        await serve(build_app(config, clock=clock), host, port, stop=stop)
    finally:
        await api_runner.cleanup()
        await token_runner.cleanup()
