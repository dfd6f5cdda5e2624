#!/usr/bin/env python3
"""A tiny OAuth client-credentials token endpoint for the benchmark (cousin of tests/fakes/token_server.py).

    POST /oauth/token   grant_type=client_credentials with client_secret_basic (or _post) credentials
                        -> {"access_token": "bench-at-<n>", "token_type": "Bearer", "expires_in": <--expires-in>}
                        wrong credentials -> 401 invalid_client; anything but client_credentials -> 400
    GET  /count         {"count": <token requests so far>, "times": [<epoch seconds of each>],
                         "issued": [{"token", "at", "expires_in"}...]}
    POST /mode/NAME     ok | down (every token request answered 503 temporarily_unavailable) |
                        slow (every answer held 2 s): the soak's outages

Every token request is counted (failed ones too) with its arrival time (time.time(), so other processes on
the machine can compare against their own clock). `--delay S` holds every answer S seconds: a slow token
endpoint keeps a renewal in flight while requests arrive. Binds 127.0.0.1:PORT (0 = ephemeral) and prints one
JSON line `{"event": "listening", "url": ...}` on stdout when ready.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import signal
import sys
import time
from typing import Any
from urllib.parse import unquote_plus

from aiohttp import web


class TokenEndpoint:
    def __init__(self, client_id: str, client_secret: str, expires_in: float, delay: float) -> None:
        self.client_id = client_id
        self.client_secret = client_secret
        self.expires_in: float | int = int(expires_in) if expires_in == int(expires_in) else expires_in
        self.delay = delay
        self.times: list[float] = []
        self.issued: list[dict[str, Any]] = []
        self.mode = "ok"

    async def token(self, request: web.Request) -> web.Response:
        self.times.append(time.time())
        form = await request.post()
        if self.mode == "down":
            return web.json_response({"error": "temporarily_unavailable"}, status=503)
        delay = 2.0 if self.mode == "slow" else self.delay
        if delay > 0:
            await asyncio.sleep(delay)
        if self._credentials(request, form) != (self.client_id, self.client_secret):
            return web.json_response({"error": "invalid_client"}, status=401)
        if form.get("grant_type") != "client_credentials":
            return web.json_response({"error": "unsupported_grant_type"}, status=400)
        token = f"bench-at-{len(self.issued) + 1}"
        self.issued.append({"token": token, "at": time.time(), "expires_in": self.expires_in})
        return web.json_response(
            {"access_token": token, "token_type": "Bearer", "expires_in": self.expires_in},
            headers={"Cache-Control": "no-store"},
        )

    @staticmethod
    def _credentials(request: web.Request, form: Any) -> tuple[str, str]:
        value = request.headers.get("Authorization", "")
        if value.startswith("Basic "):
            user, _, password = base64.b64decode(value[6:]).decode(errors="replace").partition(":")
            return unquote_plus(user), unquote_plus(password)
        return str(form.get("client_id", "")), str(form.get("client_secret", ""))

    async def set_mode(self, request: web.Request) -> web.Response:
        self.mode = request.match_info["mode"]
        return web.json_response({"mode": self.mode})

    async def count(self, _request: web.Request) -> web.Response:
        return web.json_response({"count": len(self.times), "times": self.times, "issued": self.issued})


async def serve(args: argparse.Namespace) -> None:
    endpoint = TokenEndpoint(args.client_id, args.client_secret, args.expires_in, args.delay)
    app = web.Application()
    app.router.add_post("/oauth/token", endpoint.token)
    app.router.add_get("/count", endpoint.count)
    app.router.add_post("/mode/{mode:ok|down|slow}", endpoint.set_mode)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", args.port)
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
    parser.add_argument("--expires-in", type=float, default=3600, help="token lifetime in seconds (default 3600)")
    parser.add_argument("--delay", type=float, default=0.0, help="seconds each answer is held (default 0)")
    parser.add_argument("--client-id", default="bench-client")
    parser.add_argument("--client-secret", default="bench-secret")
    args = parser.parse_args()
    asyncio.run(serve(args))
    sys.exit(0)


if __name__ == "__main__":
    main()
