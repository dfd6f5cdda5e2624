"""`authproxy login ROUTE` and `authproxy logout ROUTE`: the browser half of authorization code.

`login` serves the route's loopback `redirect_uri` for one redirect, opens the browser at the
authorize URL (or, with `--no-browser`, prints it and also accepts the redirect URL pasted on
stdin), checks `state`, exchanges the code and saves the tokens where the proxy finds them: a
running proxy picks the new login up on its next request. Every failure ends with exit code 1
and a message that says what to do; no secret is ever printed.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import webbrowser
from collections.abc import Awaitable, Callable
from typing import TextIO
from urllib.parse import urlsplit

from authproxy.clock import Clock, SystemClock
from authproxy.config.load import load_config
from authproxy.config.masking import secret_values
from authproxy.config.schema import Config, RouteConfig
from authproxy.credentials.identity import store_key
from authproxy.login.callback import CallbackServer, start_callback
from authproxy.login.flow import (
    LoginAttempt,
    LoginError,
    check_login_route,
    command_transport,
    complete_login,
    describe,
    is_callback,
    new_attempt,
    parse_redirect,
    read_callback,
    resolve_route,
    revoke,
)
from authproxy.login.stdin import stdin_can_paste, stdin_reader
from authproxy.observability.logging import Redactor, configure_logging
from authproxy.shell import Invocation, shell_quote
from authproxy.stores.base import TokenStore
from authproxy.stores.build import build_store
from authproxy.upstream.egress import EgressPolicy
from authproxy.upstream.transport import Transport

EXIT_FAILED = 1
ReadLine = Callable[[], Awaitable[str | None]]  # the next pasted line; None at end of input
OpenBrowser = Callable[[str], bool]


def cmd_login(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    _quiet_logging(config)
    route = _route(config, args.route)
    if route is None:
        return EXIT_FAILED
    invocation = Invocation.of(args)
    web_login = shell_quote(f"http://{config.listen}/-/login/{route.name}")
    device = getattr(args, "device", False) or route.auth.login == "device"
    try:
        if not device:
            check_login_route(route)
    except LoginError as err:
        print(f"login failed: {err.message}", file=sys.stderr)
        return EXIT_FAILED
    if args.no_browser and not device and not stdin_can_paste():
        print(
            "login failed: --no-browser reads the redirect URL from stdin, but stdin is closed or empty; run "
            f"`{invocation.command('login', route.name, '--no-browser')}` in a terminal and paste the URL there, "
            f"or log in through the running proxy at {web_login}",
            file=sys.stderr,
        )
        return EXIT_FAILED
    store = build_store(config)  # ConfigError (exit 2) for a corrupt or undecryptable file
    if store.kind == "memory":
        print(
            "login failed: store.kind is memory, so the tokens would be lost when this command exits; "
            "remove `store: {kind: memory}` (a file store is the default for login routes), or log in through "
            f"the running proxy at {web_login}",
            file=sys.stderr,
        )
        return EXIT_FAILED
    if device:
        from authproxy.login.device_cli import run_device_login

        return asyncio.run(run_device_login(route, store, egress=EgressPolicy(config, route, os.environ)))
    return asyncio.run(
        run_login(
            route,
            store,
            timeout=args.timeout,
            open_browser=None if args.no_browser else open_system_browser,
            read_line=stdin_reader() if args.no_browser else None,
            proxy_listen=config.listen,
            login_command=invocation.command("login", route.name),
            egress=EgressPolicy(config, route, os.environ),
        )
    )


def cmd_logout(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    _quiet_logging(config)
    route = _route(config, args.route)
    if route is None:
        return EXIT_FAILED
    if route.auth.grant in ("none", "static"):
        print(
            f"{route.name}: nothing to log out: it uses grant {route.auth.grant} (no tokens are requested)",
            file=sys.stderr,
        )
        return 0
    store = build_store(config)
    if store.kind == "memory":
        fresh = Invocation.of(args).command("token", route.name, "--fresh")
        print(
            f"{route.name}: nothing to log out: it uses {route.auth.grant} and keeps tokens in the proxy's memory "
            f"only; restart the proxy, or get a new token with `{fresh}`",
            file=sys.stderr,
        )
        return 0
    return asyncio.run(run_logout(route, store, egress=EgressPolicy(config, route, os.environ)))


async def run_login(
    route: RouteConfig,
    store: TokenStore,
    *,
    timeout: float = 300.0,
    open_browser: OpenBrowser | None = None,
    read_line: ReadLine | None = None,
    clock: Clock | None = None,
    transport: Transport | None = None,
    out: TextIO | None = None,
    proxy_listen: str | None = None,
    login_command: str | None = None,
    egress: EgressPolicy | None = None,
) -> int:
    """The whole login; returns the exit code. `open_browser=None` means --no-browser.

    `login_command`: how the user ran it (`authproxy login -c FILE ROUTE`), repeated in advice.
    """
    out = out or sys.stderr
    clock = clock or SystemClock()
    try:
        redirect_uri = route.auth.redirect_uri
        if not redirect_uri:
            raise LoginError(
                f"routes.{route.name}.auth.redirect_uri is not set; set it to the callback registered with the "
                "provider, e.g. http://localhost:8765/callback",
                route=route.name,
            )
        if route.auth.issuer:  # the endpoints from its metadata
            async with command_transport(transport) as sender:
                route = await resolve_route(route, sender, egress)
        attempt = new_attempt(route, redirect_uri)
        server = await start_callback(attempt, pasting=read_line is not None, out=out, proxy_listen=proxy_listen)
        try:
            params = await _wait_for_redirect(attempt, server, open_browser, read_line, clock, timeout, out)
            code = read_callback(params, attempt)
            print("Got the authorization code; exchanging it for tokens...", file=out)
            async with command_transport(transport) as sender:
                token = await complete_login(
                    route, attempt, code, transport=sender, store=store, clock=clock, egress=egress
                )
        except LoginError as err:
            if server is not None:
                server.finish(err.message)
            raise
        except BaseException:
            if server is not None:
                server.finish("the login was interrupted; run `authproxy login` again")
            raise
        else:
            if server is not None:
                server.finish(None)
        finally:
            if server is not None:
                await server.close()
    except LoginError as err:
        message = err.message
        if login_command:
            message = message.replace(f"authproxy login {route.name}", login_command)
        print(f"login failed: {message}", file=out)
        return EXIT_FAILED
    print(f"Logged in: route {route.name} ({describe(token, clock)}); saved to {store.where()}.", file=out)
    if not token.refresh_token:
        print(
            "warning: the provider returned no refresh token, so another login is needed when the access token "
            "expires; check that auth.scope asks for one (StockX: offline_access)",
            file=out,
        )
    print(
        "A running proxy uses the new login at once if the route was waiting for one, else at its next token "
        "renewal; no restart needed.",
        file=out,
    )
    return 0


async def run_logout(
    route: RouteConfig,
    store: TokenStore,
    *,
    clock: Clock | None = None,
    transport: Transport | None = None,
    out: TextIO | None = None,
    egress: EgressPolicy | None = None,
) -> int:
    """Delete the stored tokens, then revoke them at the provider when a revocation_url is configured.

    Deleting comes first: the local logout must not depend on the provider being reachable.
    """
    out = out or sys.stderr
    clock = clock or SystemClock()
    key = store_key(route.name)
    try:
        async with store.lock(key):
            token = await store.load(key)
            if token is None:
                print(f"route {route.name} is not logged in (nothing stored in {store.where()}).", file=out)
                return 0
            await store.delete(key)
    except OSError as exc:
        print(f"logout failed: the token store failed: {exc}; fix store.path and try again", file=out)
        return EXIT_FAILED
    print(f"Deleted the stored tokens of route {route.name} from {store.where()}.", file=out)
    if route.auth.issuer and not route.auth.revocation_url:
        try:
            async with command_transport(transport) as sender:
                route = await resolve_route(route, sender, egress)
        except LoginError as err:
            print(f"logout: cannot look up the revocation endpoint: {err.message}", file=out)
    if not route.auth.revocation_url:
        print(
            "No auth.revocation_url is configured, so the provider still considers them valid until they "
            "expire; revoke the app's access in the provider's settings if they may have leaked.",
            file=out,
        )
        return 0
    try:
        async with command_transport(transport) as sender:
            which = await revoke(route, token, transport=sender, clock=clock, egress=egress)
    except LoginError as err:
        print(
            f"logout: the local tokens are deleted, but revoking them failed: {err.message}; "
            "revoke the app's access in the provider's settings",
            file=out,
        )
        return EXIT_FAILED
    print(f"Revoked the {which.replace('_', ' ')} at the provider.", file=out)
    return 0


async def _wait_for_redirect(
    attempt: LoginAttempt,
    server: CallbackServer | None,
    open_browser: OpenBrowser | None,
    read_line: ReadLine | None,
    clock: Clock,
    timeout: float,
    out: TextIO,
) -> dict[str, str]:
    """Show the URL, then wait for the redirect (served or pasted) or the timeout."""
    print(f"Logging in route {attempt.route} at {urlsplit(attempt.url).netloc}.", file=out)
    if open_browser is not None and open_browser(attempt.url):
        print(f"Opened your browser at:\n\n  {attempt.url}\n", file=out)
    else:
        if open_browser is not None:
            print("Could not open a browser.", file=out)
        print(f"Open this URL in a browser and log in:\n\n  {attempt.url}\n", file=out)
    if read_line is not None:
        print(
            f"Then paste the address your browser was sent to (it starts with {attempt.redirect_uri}) and press Enter.",
            file=out,
        )
    print(f"Waiting up to {timeout:g}s for the login...", file=out)
    owned: list[asyncio.Future[object]] = [asyncio.ensure_future(clock.sleep(timeout))]  # type: ignore[list-item]
    if read_line is not None:
        owned.append(asyncio.ensure_future(_pasted(read_line, out, alone=server is None)))
    waiters = [*owned[1:], *([server.redirect] if server is not None else [])]
    try:
        done, _ = await asyncio.wait([*owned, *waiters], return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in owned:
            task.cancel()
    for waiter in waiters:
        if waiter in done:
            return waiter.result()  # type: ignore[return-value]
    raise LoginError(
        f"no login completed within {timeout:g}s; run `authproxy login {attempt.route}` again "
        "(--timeout S waits longer; --no-browser lets you paste the redirect URL)",
        route=attempt.route,
    )


async def _pasted(read_line: ReadLine, out: TextIO, *, alone: bool) -> dict[str, str]:
    """The first pasted line that looks like the redirect; at end of input, wait for the server."""
    while True:
        line = await read_line()
        if line is None:
            if alone:
                raise LoginError("the input ended before a redirect URL was pasted; run the login again")
            await asyncio.Event().wait()  # the callback server may still receive it
        elif line.strip():
            params = parse_redirect(line)
            if is_callback(params):
                return params
            print("That is not the redirect address (it has no code= or error=); paste the whole URL.", file=out)


def open_system_browser(url: str) -> bool:
    """Open `url` in a graphical browser; False when there is none (a console browser would hijack the TTY)."""
    if sys.platform.startswith("linux") and not (
        os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY") or os.environ.get("BROWSER")
    ):
        return False
    try:
        return webbrowser.open(url, new=1)
    except webbrowser.Error:
        return False


def _route(config: Config, name: str) -> RouteConfig | None:
    route = config.routes.get(name)
    if route is None:
        print(f"no route {name!r}; routes: {', '.join(config.routes) or '(none)'}", file=sys.stderr)
    return route


def _quiet_logging(config: Config) -> None:
    configure_logging("warning", "console", redactor=Redactor(secret_values(config)), stream=sys.stderr)
