"""What several commands share: quiet logging to stderr, the route lookup with its advice."""

from __future__ import annotations

import sys

from authproxy.config.masking import secret_values
from authproxy.config.schema import Config, RouteConfig
from authproxy.observability.logging import Redactor, configure_logging


def setup_logging(config: Config, fmt: str | None = None, level: str | None = None) -> Redactor:
    return configure_logging(
        level or config.log.level, fmt or config.log.format, redactor=Redactor(secret_values(config))
    )


def find_route(config: Config, name: str) -> RouteConfig | None:
    """The route called `name`, or None after saying which routes exist."""
    route = config.routes.get(name)
    if route is None:
        print(f"no route {name!r}; routes: {', '.join(config.routes) or '(none)'}", file=sys.stderr)
    return route
