"""`authproxy run` and `authproxy demo`: check the address is free, then serve until a signal."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import sys

from authproxy.cli.common import setup_logging
from authproxy.cli.ports import AddressInUse, probe_listen
from authproxy.config.checks import is_loopback
from authproxy.config.load import load_config
from authproxy.config.schema import split_listen
from authproxy.observability.logging import Redactor, configure_logging
from authproxy.shell import Invocation

EXIT_CONFIG = 2


def cmd_run(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    if args.trace:
        unknown_routes = [r for r in args.trace if r != "all" and r not in config.routes]
        if unknown_routes:
            known = ", ".join(["all", *config.routes])
            print(f"--trace: no route {unknown_routes[0]!r}; expected one of: {known}", file=sys.stderr)
            return EXIT_CONFIG
        config = dataclasses.replace(config, trace=tuple(dict.fromkeys([*config.trace, *args.trace])))
    redactor = setup_logging(config, args.log_format, args.log_level)
    host, port = split_listen(args.listen or config.listen)  # --listen is checked by the parser, listen: by the loader
    if not is_loopback(host) and not config.allow_anonymous:
        print(
            f"--listen: {host} is reachable from other machines; set allow_anonymous: true in the config "
            "to allow that (only on a private network)",
            file=sys.stderr,
        )
        return EXIT_CONFIG
    if args.worker is None:  # a worker binds the port its supervisor reserved (SO_REUSEPORT)
        try:
            probe_listen(host, port)  # before any token request: a taken port fails in one line, at once
        except AddressInUse as err:
            print(err.advice(Invocation.of(args).command("run", "--listen", err.other_listen())), file=sys.stderr)
            return EXIT_CONFIG
    from authproxy.server.app import build_app
    from authproxy.server.serve import serve
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

        run_loop(run_worker(app, host, port, args.worker, args.worker_fd))
        return 0
    return _serve_or_explain(serve(app, host, port), host, port, Invocation.of(args), "run")


def cmd_demo(args: argparse.Namespace) -> int:
    from authproxy.cli.demo import DEMO_CLIENT_SECRET

    configure_logging("info", args.log_format, redactor=Redactor([DEMO_CLIENT_SECRET]))
    host, port = split_listen(args.listen)
    if args.token_lifetime < 2:
        print("--token-lifetime: at least 2 seconds", file=sys.stderr)
        return EXIT_CONFIG
    try:
        probe_listen(host, port)  # before the demo's token server and API start
    except AddressInUse as err:
        print(err.advice(Invocation().command("demo", "--listen", err.other_listen())), file=sys.stderr)
        return EXIT_CONFIG
    from authproxy.cli.demo import run_demo

    return _serve_or_explain(run_demo(host, port, args.token_lifetime), host, port, Invocation(), "demo")


def _serve_or_explain(coro: object, host: str, port: int, invocation: Invocation, command: str) -> int:
    """Serve; a port taken between the probe and the bind still fails in one line."""
    try:
        run_loop(coro)
    except OSError as exc:
        taken = AddressInUse.from_error(exc, host, port)
        if taken is None:
            raise
        print(taken.advice(invocation.command(command, "--listen", taken.other_listen())), file=sys.stderr)
        return EXIT_CONFIG
    return 0


def run_loop(coro: object) -> None:
    try:
        import uvloop  # optional extra: faster event loop
    except ImportError:
        asyncio.run(coro)  # type: ignore[arg-type]
    else:
        uvloop.run(coro)  # type: ignore[arg-type]
