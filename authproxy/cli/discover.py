"""`authproxy discover ROUTE`: what the route's `auth.issuer` publishes and what authproxy takes from it.

Exit code 0 when the metadata was found and usable, 1 when not (the message names the URL and the
key), 2 for a bad config. Findings that the server does not support what the route uses are printed
as warnings; the proxy would log the same.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from typing import TextIO

from authproxy.config.load import load_config
from authproxy.config.schema import RouteConfig
from authproxy.credentials.discovery import DiscoveryError, discover
from authproxy.upstream.egress import EgressPolicy
from authproxy.upstream.pool import NativeTransport
from authproxy.upstream.transport import Transport

LABELS = {"filled": "filled", "kept": "kept", "unsupported": "warning", "note": "note"}


def cmd_discover(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    route = config.routes.get(args.route)
    if route is None:
        print(f"no route {args.route!r}; routes: {', '.join(config.routes) or '(none)'}", file=sys.stderr)
        return 1
    return asyncio.run(run_discover(route, egress=EgressPolicy(config, route, os.environ)))


async def run_discover(
    route: RouteConfig,
    *,
    transport: Transport | None = None,
    out: TextIO | None = None,
    egress: EgressPolicy | None = None,
) -> int:
    out = out or sys.stdout
    if not route.auth.issuer:
        print(
            f"route {route.name!r} has no auth.issuer; set routes.{route.name}.auth.issuer to the authorization "
            "server's issuer URL (e.g. https://idp.example.com)",
            file=out,
        )
        return 1
    own = NativeTransport(limit=2) if transport is None else None
    try:
        found = await discover(route, transport or own, egress)  # type: ignore[arg-type]
    except DiscoveryError as exc:
        print(f"route {route.name}: {exc.message}", file=out)
        return 1
    finally:
        if own is not None:
            await own.close()
    print(f"route {route.name}: issuer {route.auth.issuer}", file=out)
    print(f"metadata: {found.url}", file=out)
    for finding in found.findings:
        print(f"  {LABELS.get(finding.kind, finding.kind):8} {finding.message}", file=out)
    if not any(f.kind == "filled" for f in found.findings):
        print("  (nothing to fill: every endpoint is set explicitly)", file=out)
    return 0
