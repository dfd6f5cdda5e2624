"""Command line: run | check | token | presets. Thin: parsing and exit codes, no logic."""

from __future__ import annotations

import argparse
import asyncio
import importlib
import json
import sys
from collections.abc import Callable, Sequence

import yaml

from authproxy.config.checks import is_loopback, scope_warnings
from authproxy.config.load import load_config
from authproxy.config.presets import load_preset, preset_names
from authproxy.config.schema import Config, RouteConfig, masked, secret_values
from authproxy.credentials.tokens import Token
from authproxy.errors import AuthProxyError, ConfigError
from authproxy.observability.logging import Redactor, configure_logging

EXIT_CONFIG = 2
DEFAULT_CONFIG = "config.yaml"


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except ConfigError as err:
        print(err.render(), file=sys.stderr)
        return EXIT_CONFIG
    except KeyboardInterrupt:
        return 130


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="authproxy", description="Local authenticating reverse proxy.")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="serve the configured routes")
    _config_arg(run)
    run.add_argument("--listen", help="host:port, overriding `listen:` in the config")
    run.add_argument("--log-format", choices=("auto", "console", "json"), help="override log.format")
    run.add_argument("--log-level", choices=("debug", "info", "warning", "error"), help="override log.level")
    run.add_argument(
        "--workers",
        type=_positive_int,
        default=1,
        help="processes sharing the port (SO_REUSEPORT) and the token store (default 1)",
    )
    run.add_argument("--worker", type=int, help=argparse.SUPPRESS)  # set by the supervisor: this worker's index
    run.add_argument("--worker-fd", type=int, help=argparse.SUPPRESS)  # its end of the supervisor's socket pair
    run.set_defaults(func=cmd_run)

    check = sub.add_parser("check", help="validate a config and print the resolved routes, secrets masked")
    _config_arg(check)
    check.set_defaults(func=cmd_check)

    token = sub.add_parser("token", help="print a current access token for ROUTE (for scripts)")
    _config_arg(token)
    token.add_argument("route")
    token.add_argument("--json", action="store_true", help="also print type and expiry, as JSON")
    token.set_defaults(func=cmd_token)

    login = sub.add_parser("login", help="log ROUTE in through the browser (authorization code + PKCE)")
    _config_arg(login)
    login.add_argument("route")
    login.add_argument("--no-browser", action="store_true", help="print the URL; accept the redirect URL on stdin")
    login.add_argument("--timeout", type=float, default=300.0, help="seconds to wait for the browser (default 300)")
    login.set_defaults(func=_lazy("login.cli", "cmd_login"))

    logout = sub.add_parser("logout", help="forget ROUTE's stored tokens (and revoke them when configured)")
    _config_arg(logout)
    logout.add_argument("route")
    logout.set_defaults(func=_lazy("login.cli", "cmd_logout"))

    run_exec = sub.add_parser("exec", help="run COMMAND with the proxy on a free loopback port (AUTHPROXY_URL)")
    _config_arg(run_exec)
    run_exec.add_argument("command", nargs=argparse.REMAINDER, help="-- COMMAND [ARGS...]")
    run_exec.set_defaults(func=_lazy("cli.exec", "cmd_exec"))

    demo = sub.add_parser("demo", help="run a self-contained demo: token server, API and proxy on loopback")
    demo.add_argument("--listen", default="127.0.0.1:8080", help="where the demo proxy listens")
    demo.add_argument("--token-lifetime", type=int, default=30, help="seconds each demo token lives")
    demo.add_argument("--log-format", choices=("auto", "console", "json"), default="auto")
    demo.set_defaults(func=cmd_demo)

    presets = sub.add_parser("presets", help="list the built-in provider presets")
    presets.add_argument("name", nargs="?", help="show one preset's defaults")
    presets.set_defaults(func=cmd_presets)
    return parser


def _lazy(module: str, name: str) -> Callable[[argparse.Namespace], int]:
    """A command implemented in its own module, imported only when that command runs."""

    def run(args: argparse.Namespace) -> int:
        return int(getattr(importlib.import_module(f"authproxy.{module}"), name)(args) or 0)

    return run


def _positive_int(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of at least 1")
    return int(text)


def _config_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-c", "--config", default=DEFAULT_CONFIG, help=f"config file (default {DEFAULT_CONFIG})")


def _setup_logging(config: Config, fmt: str | None = None, level: str | None = None) -> Redactor:
    return configure_logging(
        level or config.log.level, fmt or config.log.format, redactor=Redactor(secret_values(config))
    )


def cmd_run(args: argparse.Namespace) -> int:
    from authproxy.config.schema import split_listen
    from authproxy.server.app import build_app
    from authproxy.server.serve import serve

    config = load_config(args.config)
    redactor = _setup_logging(config, args.log_format, args.log_level)
    try:
        host, port = split_listen(args.listen or config.listen)
    except ValueError:
        print(f"--listen: {args.listen!r} is not host:port; write e.g. 127.0.0.1:8080", file=sys.stderr)
        return EXIT_CONFIG
    if not is_loopback(host) and not config.allow_anonymous:
        print(
            f"--listen: {host} is reachable from other machines; set allow_anonymous: true in the config "
            "to allow that (only on a private network)",
            file=sys.stderr,
        )
        return EXIT_CONFIG
    from authproxy.stores.build import build_store

    store = build_store(config, serving=True, processes=args.workers)  # ConfigError (exit 2) before any worker
    if args.workers > 1 and args.worker is None:
        from authproxy.server.workers import supervise

        if config.admin.listen is not None and split_listen(config.admin.listen)[1] == 0:
            print("admin.listen: give a fixed port with --workers (each worker would pick its own)", file=sys.stderr)
            return EXIT_CONFIG
        return supervise(args, config, host, port)
    app = build_app(config, config_path=args.config, redactor=redactor, store=store)
    if args.worker is not None:
        from authproxy.server.workers import run_worker

        _run(run_worker(app, host, port, args.worker, args.worker_fd))
    else:
        _run(serve(app, host, port))
    return 0


def _run(coro: object) -> None:
    try:
        import uvloop  # optional extra: faster event loop
    except ImportError:
        asyncio.run(coro)  # type: ignore[arg-type]
    else:
        uvloop.run(coro)  # type: ignore[arg-type]


def cmd_demo(args: argparse.Namespace) -> int:
    from authproxy.cli.demo import DEMO_CLIENT_SECRET, run_demo
    from authproxy.config.schema import split_listen

    configure_logging("info", args.log_format, redactor=Redactor([DEMO_CLIENT_SECRET]))
    try:
        host, port = split_listen(args.listen)
    except ValueError:
        print(f"--listen: {args.listen!r} is not host:port; write e.g. 127.0.0.1:8080", file=sys.stderr)
        return EXIT_CONFIG
    if args.token_lifetime < 2:
        print("--token-lifetime: at least 2 seconds", file=sys.stderr)
        return EXIT_CONFIG
    _run(run_demo(host, port, args.token_lifetime))
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    from authproxy.clock import SystemClock
    from authproxy.credentials.build import not_configured
    from authproxy.server.runtime import build_runtime
    from authproxy.stores.build import build_store

    config = load_config(args.config)
    _setup_logging(config, "console", "warning")  # what building says (a store's warnings) goes to stderr
    # What `run` builds (routes, credentials, client auth, TLS files, the store), not started: nothing connects.
    runtime = build_runtime(config, clock=SystemClock(), store=build_store(config, serving=True))
    asyncio.run(runtime.close())
    print(yaml.safe_dump(masked(config), sort_keys=False, default_flow_style=False), end="")
    for route in config.routes.values():
        for key in not_configured(route):
            print(
                f"warning: {key} is empty: route {route.name!r} answers 503 not_configured until it is set",
                file=sys.stderr,
            )
    for warning in scope_warnings(config):
        print(f"warning: {warning}", file=sys.stderr)
    print(
        f"# OK: {len(config.routes)} route(s): "
        + ", ".join(f"{r.prefix} -> {r.upstream}" for r in config.routes.values())
    )
    return 0


def cmd_token(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    _setup_logging(config, "console", "warning")
    route = config.routes.get(args.route)
    if route is None:
        print(f"no route {args.route!r}; routes: {', '.join(config.routes) or '(none)'}", file=sys.stderr)
        return 1
    try:
        token = asyncio.run(_fetch_token(route, config))
    except AuthProxyError as err:
        print(f"{args.route}: {err.code}: {err.message}", file=sys.stderr)
        return 1
    if token is None:
        print(f"route {args.route!r} has no token (auth.grant is none)", file=sys.stderr)
        return 1
    if args.json:
        print(
            json.dumps(
                {"access_token": token.access_token, "token_type": token.token_type, "expires_at": token.expires_at}
            )
        )
    else:
        print(token.access_token)
    return 0


async def _fetch_token(route: RouteConfig, config: Config) -> Token | None:
    from authproxy.clock import SystemClock
    from authproxy.credentials.build import build_credential
    from authproxy.stores.build import build_store
    from authproxy.upstream.pool import NativeTransport

    transport = NativeTransport(limit=4)
    store = build_store(config)
    try:
        credential = build_credential(route, transport=transport, store=store, clock=SystemClock())
        if credential is None:
            return None
        try:
            return await credential.current()
        finally:
            await credential.close()
    finally:
        await store.close()
        await transport.close()


def cmd_presets(args: argparse.Namespace) -> int:
    if args.name:
        preset = load_preset(args.name)
        if preset is None:
            print(f"no preset {args.name!r}; presets: {', '.join(preset_names())}", file=sys.stderr)
            return 1
        print(f"# {preset.name}: {preset.description}")
        if preset.required_headers:
            print(f"# routes using it must set headers: {', '.join(preset.required_headers)}")
        if preset.sensitive_scopes:
            print(
                f"# sensitive scopes, each for a route of its own (not asked for by default): "
                f"{', '.join(preset.sensitive_scopes)}"
            )
        for key, hint in preset.required_keys.items():
            print(f"# routes using it must set {key}: {hint}")
        if preset.params:
            given = ", ".join(f"{p.name}: {p.example or '...'}" for p in preset.params.values())
            print(f"# parameters, given as preset: {{name: {preset.name}, {given}}}")
            for param in preset.params.values():
                print(f"#   {param.usage()}")
        print(yaml.safe_dump(preset.route, sort_keys=False), end="")
        return 0
    width = max(map(len, preset_names()))
    for name in preset_names():
        preset = load_preset(name)
        assert preset is not None
        print(f"{name:{width}} {preset.description}")
    return 0
