"""`authproxy check`: is the config valid, and can each route work? A short table by default.

Builds what `run` builds (routes, credentials, client auth, TLS files, the store) without opening
a socket; `--online` also requests one token per route. Exit codes: 2 for a config error; 1 with
`--strict` when a route is not ready, or with `--online` when a probe failed; else 0, so an
example config whose credentials are not set yet still checks out.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys

import yaml

from authproxy.cli.common import setup_logging
from authproxy.cli.egress import egress_lines
from authproxy.cli.readiness import (
    READY,
    REQUESTING,
    RouteReport,
    assess,
    probe_discovery,
    probe_token,
    quoted_uris,
)
from authproxy.clock import SystemClock
from authproxy.config.checks import scope_warnings
from authproxy.config.load import load_config
from authproxy.config.masking import masked
from authproxy.config.schema import Config
from authproxy.server.runtime import Runtime, build_runtime
from authproxy.shell import Invocation
from authproxy.stores.build import build_store
from authproxy.upstream.egress import EgressPolicy

EXIT_NOT_READY = 1


def cmd_check(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    setup_logging(config, "console", "warning")  # what building says (a store's warnings) goes to stderr
    runtime = build_runtime(
        config, clock=SystemClock(), store=build_store(config, serving=True), config_path=args.config
    )
    invocation = Invocation.of(args)
    if args.online:  # each failure is reported once, in the table: not again as a log line
        setup_logging(config, "console", "critical")
    reports = asyncio.run(_assess(runtime, invocation, online=args.online))
    if args.show_config:
        print(yaml.safe_dump(masked(config), sort_keys=False, default_flow_style=False), end="")
    for warning in [*config.load_warnings, *scope_warnings(config)]:
        print(f"warning: {warning}", file=sys.stderr)
    if args.json:
        print(json.dumps({"config": args.config, "routes": [r.as_json() for r in reports]}, indent=2))
    else:
        print(render_table(reports))
        print("\n".join(egress_lines(runtime.router.routes)))
        print(summary(config, args, reports, invocation))
    failed = args.online and any(not p.ok for r in reports for p in r.probes)
    not_ready = args.strict and any(r.state != READY for r in reports)
    return EXIT_NOT_READY if failed or not_ready else 0


async def _assess(runtime: Runtime, invocation: Invocation, *, online: bool) -> list[RouteReport]:
    try:
        reports = await assess(runtime.config, runtime.store, invocation)
        if online:
            await probe_routes(runtime, reports, invocation)
        return reports
    finally:
        await runtime.close()


async def probe_routes(runtime: Runtime, reports: list[RouteReport], invocation: Invocation) -> None:
    """The online checks of each ready route, each appended to `report.probes` (a `Probe` per check).

    The one place per-route online checks go: OIDC discovery adds its `Probe` next to the token's.
    """
    routes = {route.name: route for route in runtime.router.routes}
    for report in reports:
        route = routes[report.name]
        if route.config.auth.issuer:  # even when not ready: a login route needs the endpoints to log in at all
            egress = EgressPolicy(runtime.config, route.config, runtime.environ)
            transport = runtime.transports.for_tokens(route.config)
            report.probes.append(await probe_discovery(route.config, transport, egress))
        if report.state != READY:
            continue
        report.probes.append(await probe_token(route.config, route.credential, invocation))


def render_table(reports: list[RouteReport]) -> str:
    rows = [("ROUTE", "PREFIX", "UPSTREAM", "GRANT", "STATE")]
    for r in reports:
        state = f"{r.state}: {r.detail}" if r.detail else r.state
        rows.append((r.name, r.prefix, r.upstream, r.grant, state))
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    lines = ["  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row[:4])) + "  " + row[4] for row in rows]
    out: list[str] = []
    for line, report in zip(lines, [None, *reports], strict=True):
        out.append(line.rstrip())
        if report is None:
            continue
        if report.redirect_uris:
            out.append(f"    redirect URIs to register with the provider: {quoted_uris(report)}")
        for probe in report.probes:
            out.append(f"    online {probe.name}: {'ok' if probe.ok else 'FAILED'}: {probe.detail}")
    return "\n".join(out)


def summary(config: Config, args: argparse.Namespace, reports: list[RouteReport], invocation: Invocation) -> str:
    ready = sum(r.state == READY for r in reports)
    line = f"config {args.config} is valid; {ready} of {len(reports)} route(s) ready"
    others = [r.state for r in reports if r.state != READY]
    if others:
        counts = {state: others.count(state) for state in dict.fromkeys(others)}
        line += " (" + ", ".join(f"{n} {state}" for state, n in counts.items()) + ")"
    failed = sum(not p.ok for r in reports for p in r.probes)
    if args.online:
        line += f"; online: {failed} failed" if failed else "; online: every token request succeeded"
    elif any(r.state == READY and r.grant in REQUESTING for r in reports):
        line += f". `{invocation.command('check', '--online')}` requests one token per route"
    return line
