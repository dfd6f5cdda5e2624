"""`authproxy check`'s lines on egress: which proxy (password masked) or direct each route uses, and why."""

from __future__ import annotations

from collections.abc import Iterable

from authproxy.proxy.routing import Route
from authproxy.upstream.egress import NO_EGRESS


def egress_lines(routes: Iterable[Route]) -> list[str]:
    """One comment line per route (and per token endpoint): `# egress api: upstream via ... (from ...)`.

    Routes that go direct only because no egress proxy is set anywhere get no line: nothing to report."""
    lines = []
    for route in sorted(routes, key=lambda r: r.name):
        for what, choice in (("upstream", route.egress), ("token endpoint", route.token_egress)):
            if choice is not None and not (choice.egress is None and choice.reason == NO_EGRESS):
                via = choice.egress.shown if choice.egress is not None else "direct"
                lines.append(f"# egress {route.name}: {what} {via} (from {choice.reason})")
    return lines
