"""Command line: the parser and the dispatch. Thin: each command lives in its own module.

Only argparse is imported here: every command's module (and aiohttp, yaml, structlog behind it)
is imported when that command runs, so `authproxy --help` and shell completion answer at once.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable, Sequence

from authproxy import __version__
from authproxy.shell import DEFAULT_CONFIG

EXIT_CONFIG = 2
EXAMPLES = {
    "run": "authproxy run\n  authproxy run -c team.yaml --listen 127.0.0.1:9000\n  authproxy run --workers 4",
    "check": "authproxy check\n  authproxy check -c team.yaml --strict\n  authproxy check --online --json",
    "status": "authproxy status\n  authproxy status -c team.yaml --json",
    "token": "authproxy token stockx\n  curl -H \"Authorization: Bearer $(authproxy token stockx)\" 'https://...'"
    "\n  authproxy token stockx --fresh --json",
    "login": "authproxy login acme\n  authproxy login -c login.yaml acme --no-browser\n  authproxy login acme --device",
    "logout": "authproxy logout acme",
    "discover": "authproxy discover acme\n  authproxy discover -c team.yaml entra",
    "exec": "authproxy exec -- newman run collection.json\n  authproxy exec -c ci.yaml -- pytest tests/",
    "demo": "authproxy demo\n  authproxy demo --listen 127.0.0.1:9000 --token-lifetime 10",
    "presets": "authproxy presets\n  authproxy presets stockx",
    "postman": "authproxy postman -o postman/\n  authproxy postman -c team.yaml -o out/ --base-url https://authproxy.internal:8080",
    "completion": "authproxy completion bash >> ~/.bashrc\n  authproxy completion zsh > ~/.zfunc/_authproxy"
    "\n  authproxy completion fish > ~/.config/fish/completions/authproxy.fish",
}


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    from authproxy.errors import ConfigError

    try:
        return int(args.func(args) or 0)
    except ConfigError as err:
        print(err.render(), file=sys.stderr)
        return EXIT_CONFIG
    except KeyboardInterrupt:
        return 130


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="authproxy",
        description="Local authenticating reverse proxy: clients call http://127.0.0.1:8080/ROUTE/..., "
        "authproxy forwards to the route's upstream with fresh OAuth tokens injected.",
        epilog="Start with `authproxy demo`; `authproxy COMMAND --help` shows examples.",
    )
    parser.add_argument("--version", action="version", version=f"authproxy {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, help_text: str, func: Callable[[argparse.Namespace], int]) -> argparse.ArgumentParser:
        cmd = sub.add_parser(
            name,
            help=help_text,
            description=help_text[0].upper() + help_text[1:] + ".",
            epilog="examples:\n  " + EXAMPLES[name],
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        cmd.set_defaults(func=func)
        return cmd

    run = command("run", "serve the configured routes", _lazy("cli.serve", "cmd_run"))
    _config_arg(run)
    run.add_argument(
        "--listen", type=listen_address, metavar="HOST:PORT", help="host:port, overriding `listen:` in the config"
    )
    run.add_argument("--log-format", choices=("auto", "console", "json"), help="override log.format")
    run.add_argument("--log-level", choices=("debug", "info", "warning", "error"), help="override log.level")
    run.add_argument(
        "--workers",
        type=_positive_int,
        default=1,
        help="processes sharing the port (SO_REUSEPORT) and the token store (default 1)",
    )
    run.add_argument(
        "--trace",
        action="append",
        metavar="ROUTE",
        help="log each request of ROUTE in full, secrets redacted "
        "(repeatable; `all` for every route); adds to `trace:` in the config",
    )
    run.add_argument("--worker", type=int, help=argparse.SUPPRESS)  # set by the supervisor: this worker's index
    run.add_argument("--worker-fd", type=int, help=argparse.SUPPRESS)  # its end of the supervisor's socket pair

    check = command("check", "validate a config and show whether each route can work", _lazy("cli.check", "cmd_check"))
    _config_arg(check)
    check.add_argument("--show-config", action="store_true", help="print the resolved config as YAML, secrets masked")
    check.add_argument("--json", action="store_true", help="print the routes' readiness as JSON")
    check.add_argument("--online", action="store_true", help="also request one token per route (contacts providers)")
    check.add_argument(
        "--strict", action="store_true", help="exit 1 when any route is not ready (default: only config errors fail)"
    )

    status = command(
        "status",
        "show each route's token state, from the running proxy or the store",
        _lazy("cli.status", "cmd_status"),
    )
    _config_arg(status)
    status.add_argument("--json", action="store_true", help="print JSON instead of a table")

    token = command("token", "print an access token for ROUTE (for scripts)", _lazy("cli.token", "cmd_token"))
    _config_arg(token)
    token.add_argument("route", metavar="ROUTE", help="a route name under `routes:` in the config")
    token.add_argument("--json", action="store_true", help="also print type and expiry, as JSON")
    token.add_argument("--fresh", action="store_true", help="request a new token even when a stored one is valid")

    login = command(
        "login", "log ROUTE in through the browser (authorization code + PKCE)", _lazy("login.cli", "cmd_login")
    )
    _config_arg(login)
    login.add_argument("route", metavar="ROUTE", help="a route with auth.grant authorization_code")
    login.add_argument("--no-browser", action="store_true", help="print the URL; accept the redirect URL on stdin")
    login.add_argument("--timeout", type=float, default=300.0, help="seconds to wait for the browser (default 300)")
    login.add_argument(
        "--device", action="store_true", help="RFC 8628 device login: a link and a code to confirm on any device"
    )

    logout = command(
        "logout", "forget ROUTE's stored tokens (and revoke them when configured)", _lazy("login.cli", "cmd_logout")
    )
    _config_arg(logout)
    logout.add_argument("route", metavar="ROUTE", help="a route name under `routes:` in the config")

    discover = command(
        "discover",
        "fetch ROUTE's auth.issuer metadata and show what it fills in",
        _lazy("cli.discover", "cmd_discover"),
    )
    _config_arg(discover)
    discover.add_argument("route", metavar="ROUTE", help="a route with auth.issuer")

    run_exec = command(
        "exec", "run COMMAND with the proxy on a free loopback port (AUTHPROXY_URL)", _lazy("cli.exec", "cmd_exec")
    )
    _config_arg(run_exec)
    run_exec.add_argument("command", nargs=argparse.REMAINDER, help="-- COMMAND [ARGS...]: what to run")

    demo = command(
        "demo", "run a self-contained demo: token server, API and proxy on loopback", _lazy("cli.serve", "cmd_demo")
    )
    demo.add_argument(
        "--listen",
        default="127.0.0.1:8080",
        type=listen_address,
        metavar="HOST:PORT",
        help="where the demo proxy listens",
    )
    demo.add_argument("--token-lifetime", type=int, default=30, help="seconds each demo token lives")
    demo.add_argument("--log-format", choices=("auto", "console", "json"), default="auto")

    presets = command("presets", "list the built-in provider presets", _lazy("cli.presets", "cmd_presets"))
    presets.add_argument("name", nargs="?", metavar="NAME", help="show one preset's defaults (e.g. stockx)")

    postman = command(
        "postman",
        "write a Postman collection and environment pointing at the proxy (no secret in them)",
        _lazy("cli.postman", "cmd_postman"),
    )
    _config_arg(postman)
    postman.add_argument("-o", "--output", default=".", metavar="DIR", help="directory to write the two files to")
    postman.add_argument("--base-url", help="where clients reach the proxy (default: from `listen:`)")
    postman.add_argument("--name", default="authproxy", help="the collection's and environment's name")

    completion = command("completion", "print a shell completion script", _lazy("cli.completion", "cmd_completion"))
    completion.add_argument("shell", nargs="?", choices=("bash", "zsh", "fish"), help="the shell to complete in")
    completion.add_argument("--routes", action="store_true", help=argparse.SUPPRESS)  # what the scripts call
    completion.add_argument("-c", "--config", default=DEFAULT_CONFIG, help=argparse.SUPPRESS)
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


def listen_address(text: str) -> str:
    """`host:port` with a port from 0 to 65535 (0: any free port); refused by argparse with the reason."""
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit():
        raise argparse.ArgumentTypeError(f"{text!r} is not host:port; write e.g. 127.0.0.1:8080")
    if int(port) > 65535:
        example = f"{host or '127.0.0.1'}:8080"
        raise argparse.ArgumentTypeError(f"port {port} is out of range (0-65535); write e.g. {example}")
    return text


def _config_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-c", "--config", default=DEFAULT_CONFIG, metavar="FILE", help=f"config file (default {DEFAULT_CONFIG})"
    )
