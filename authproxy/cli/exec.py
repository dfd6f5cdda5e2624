"""`authproxy exec -c FILE -- COMMAND...`: the proxy for exactly as long as one command runs.

The proxy binds a free loopback port (no clash with a proxy already running, nothing exposed),
the command finds it in `AUTHPROXY_URL` and `AUTHPROXY_URL_<ROUTE>`, and authproxy exits with
the command's exit code, so a CI step (newman, pytest, a shell script) needs no auth of its own.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import signal
import sys
from collections.abc import Mapping, Sequence

import structlog

from authproxy.config.load import load_config
from authproxy.config.masking import secret_values
from authproxy.config.schema import Config
from authproxy.observability.logging import Redactor, configure_logging

EXIT_USAGE = 2
EXIT_NOT_EXECUTABLE = 126  # the shell's codes, so `authproxy exec` reads like `sh -c`
EXIT_NOT_FOUND = 127
URL_VAR = "AUTHPROXY_URL"

log = structlog.get_logger("authproxy.exec")


def route_var(name: str) -> str:
    """`AUTHPROXY_URL_<ROUTE>`: the route name upper-cased, anything but letters and digits as `_`."""
    return f"{URL_VAR}_{re.sub(r'[^A-Z0-9]', '_', name.upper())}"


def proxy_env(config: Config, base_url: str) -> dict[str, str]:
    """The variables the command gets: the proxy's base URL and each route's own base URL."""
    env = {URL_VAR: base_url}
    for route in config.routes.values():
        env[route_var(route.name)] = base_url if route.prefix == "/" else base_url + route.prefix
    return env


def exit_code(returncode: int) -> int:
    """A child killed by signal N exits like it would under a shell: 128 + N."""
    return 128 - returncode if returncode < 0 else returncode


def cmd_exec(args: argparse.Namespace) -> int:
    command = list(args.command)
    if command[:1] == ["--"]:
        command = command[1:]
    if not command:
        print("usage: authproxy exec [-c CONFIG] -- COMMAND [ARGS...]", file=sys.stderr)
        return EXIT_USAGE
    config = load_config(args.config)
    redactor = configure_logging(config.log.level, config.log.format, redactor=Redactor(secret_values(config)))
    return asyncio.run(run_with_proxy(config, command, config_path=args.config, redactor=redactor))


async def run_with_proxy(
    config: Config,
    command: Sequence[str],
    *,
    config_path: str | None = None,
    redactor: Redactor | None = None,
    env: Mapping[str, str] | None = None,
) -> int:
    """Serve `config` on 127.0.0.1:<free port> while `command` runs; return its exit code."""
    from authproxy.server.app import build_app
    from authproxy.server.serve import start_server

    app = build_app(config, config_path=config_path, redactor=redactor)
    runner, url = await start_server(app, "127.0.0.1", 0)
    try:
        child_env = dict(os.environ if env is None else env)
        child_env.update(proxy_env(config, url))
        log.info("exec", url=url, command=command[0])
        try:
            proc = await asyncio.create_subprocess_exec(*command, env=child_env)
        except FileNotFoundError:
            print(f"authproxy exec: {command[0]}: command not found", file=sys.stderr)
            return EXIT_NOT_FOUND
        except PermissionError:
            print(f"authproxy exec: {command[0]}: permission denied", file=sys.stderr)
            return EXIT_NOT_EXECUTABLE
        with ForwardSignals(proc):
            returncode = await proc.wait()
    finally:
        await runner.cleanup()
    return exit_code(returncode)


class ForwardSignals:
    """While the command runs, signals meant for the pair go to the command.

    SIGTERM and SIGHUP are forwarded. SIGINT is forwarded too, except when authproxy runs in
    a terminal's foreground group: Ctrl-C reached the command already, and a second interrupt
    would cut short its own clean-up. Either way authproxy serves until the command exits.
    """

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.loop = asyncio.get_running_loop()
        self.signals = [signal.SIGTERM, signal.SIGHUP, signal.SIGINT]

    def _send(self, sig: signal.Signals) -> None:
        if self.proc.returncode is None:
            self.proc.send_signal(sig)

    def __enter__(self) -> None:
        terminal_interrupts = _in_foreground_of_terminal()
        for sig in self.signals:
            if sig == signal.SIGINT and terminal_interrupts:
                self.loop.add_signal_handler(sig, lambda: None)
            else:
                self.loop.add_signal_handler(sig, self._send, sig)

    def __exit__(self, *exc: object) -> None:
        for sig in self.signals:
            self.loop.remove_signal_handler(sig)


def _in_foreground_of_terminal() -> bool:
    """True when a terminal's Ctrl-C reaches this process group (and so the command) directly."""
    for fd in (0, 1, 2):
        try:
            if os.isatty(fd):
                return os.tcgetpgrp(fd) == os.getpgrp()
        except OSError:
            continue
    return False
