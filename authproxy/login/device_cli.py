"""`authproxy login ROUTE --device`: the terminal side of an RFC 8628 device login.

Prints the verification link (shell-quoted: it carries `?` and `&`) and the user code, waits while
the user confirms on any device, and saves the tokens where a running proxy picks them up.
"""

from __future__ import annotations

import sys
from typing import TextIO

from authproxy.clock import Clock, SystemClock
from authproxy.config.schema import RouteConfig
from authproxy.login.device import poll_for_token, request_device_code
from authproxy.login.flow import LoginError, command_transport, describe, resolve_route, save_login
from authproxy.stores.base import TokenStore
from authproxy.upstream.egress import EgressPolicy
from authproxy.upstream.transport import Transport

EXIT_FAILED = 1


async def run_device_login(
    route: RouteConfig,
    store: TokenStore,
    *,
    clock: Clock | None = None,
    transport: Transport | None = None,
    out: TextIO | None = None,
    egress: EgressPolicy | None = None,
) -> int:
    """The whole device login; returns the exit code. `egress`: the route's egress proxy rules."""
    out, clock = out or sys.stderr, clock or SystemClock()
    try:
        async with command_transport(transport) as sender:
            return await _device_login(route, store, clock, sender, out, egress)
    except LoginError as err:
        print(f"login failed: {err.message}", file=out)
        return EXIT_FAILED


async def _device_login(
    route: RouteConfig,
    store: TokenStore,
    clock: Clock,
    sender: Transport,
    out: TextIO,
    egress: EgressPolicy | None,
) -> int:
    """Ask for a device code, show it, poll until approved, save the tokens as a browser login does."""
    route = await resolve_route(route, sender, egress)
    code = await request_device_code(route, transport=sender, clock=clock, egress=egress)
    lifetime = max(0, round(code.expires_at - clock.monotonic()))
    # The link stands alone on its line, unquoted: it goes into a browser, not a shell (as `login` prints).
    if code.verification_uri_complete:
        print(f"To log in route {route.name}, open this link on any device with a browser:", file=out)
        print(f"\n  {code.verification_uri_complete}\n", file=out)
        print(f"and check that it shows the code {code.user_code}.", file=out)
    else:
        print(f"To log in route {route.name}, open this page on any device with a browser:", file=out)
        print(f"\n  {code.verification_uri}\n", file=out)
        print(f"and enter the code:\n\n  {code.user_code}\n", file=out)
    print(f"Waiting up to {lifetime}s for the approval...", file=out)
    token = await poll_for_token(route, code, transport=sender, clock=clock, egress=egress)
    await save_login(route, token, store)
    print(f"Logged in: route {route.name} ({describe(token, clock)}); saved to {store.where()}.", file=out)
    if not token.refresh_token:
        print(
            "warning: the provider returned no refresh token, so another login is needed when the access token "
            "expires; check that auth.scope asks for one (often offline_access)",
            file=out,
        )
    print("A running proxy uses the new login at its next token request; no restart needed.", file=out)
    return 0
