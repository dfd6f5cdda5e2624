"""`authproxy token ROUTE`: an access token for scripts, like `gcloud auth print-access-token`.

The store is used as the proxy uses it: a valid stored token is printed without a request, a new
one is saved for the proxy (and the next call) to reuse; `--fresh` forces a new request. A
one-shot command reports each failure once, with no retry talk and no library class names.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys

from authproxy.cli.common import find_route, setup_logging
from authproxy.cli.readiness import failure_text
from authproxy.config.load import load_config
from authproxy.config.schema import Config, RouteConfig
from authproxy.credentials.tokens import Token
from authproxy.errors import AuthProxyError
from authproxy.shell import Invocation

EXIT_FAILED = 1


def cmd_token(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    setup_logging(config, "console", "critical")  # the failure is printed once, below, not also as a log line
    route = find_route(config, args.route)
    if route is None:
        return EXIT_FAILED
    if route.auth.grant == "none":
        print(f"route {args.route!r} has no token (auth.grant is none)", file=sys.stderr)
        return EXIT_FAILED
    outcome = asyncio.run(fetch_token(route, config, fresh=args.fresh, invocation=Invocation.of(args)))
    if isinstance(outcome, str):
        print(f"{args.route}: {outcome}", file=sys.stderr)
        return EXIT_FAILED
    if args.json:
        print(
            json.dumps(
                {
                    "access_token": outcome.access_token,
                    "token_type": outcome.token_type,
                    "expires_at": outcome.expires_at,
                }
            )
        )
    else:
        print(outcome.access_token)
    return 0


async def fetch_token(route: RouteConfig, config: Config, *, fresh: bool, invocation: Invocation) -> Token | str:
    """The route's token (stored and valid, or new); a failure as one sentence."""
    from authproxy.clock import SystemClock
    from authproxy.credentials.build import build_credential
    from authproxy.stores.build import build_store
    from authproxy.upstream.egress import EgressPolicy
    from authproxy.upstream.pool import NativeTransport

    transport = NativeTransport(limit=4)
    store = build_store(config)
    try:
        credential = build_credential(
            route,
            transport=transport,
            store=store,
            clock=SystemClock(),
            config_path=invocation.config,
            egress=EgressPolicy(config, route, os.environ),
        )
        assert credential is not None  # grant none is answered before
        try:
            return await (credential.refresh() if fresh else credential.current())
        except AuthProxyError as err:
            return failure_text(route, credential, err, invocation)
        finally:
            await credential.close()
    finally:
        await store.close()
        await transport.close()
