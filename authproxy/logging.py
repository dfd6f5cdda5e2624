"""structlog setup with a redaction processor that runs on every line.

Secrets are masked three ways: by key name (`client_secret=...`), by pattern inside any string
(`Bearer ...`, `refresh_token=...` in a query or form), and by value (every secret from the
config is registered, so a stray echo of it is masked too).
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Iterable
from typing import Any, TextIO

import structlog

MASK = "[redacted]"
SECRET_KEYS = frozenset(
    (
        "authorization",
        "proxy_authorization",
        "token",
        "access_token",
        "refresh_token",
        "id_token",
        "client_secret",
        "secret",
        "password",
        "api_key",
        "x_api_key",
        "x-api-key",
        "client_assertion",
        "assertion",
        "private_key",
        "cookie",
        "set_cookie",
    )
)
_PARAMS = (
    r"(?:access_token|refresh_token|id_token|client_secret|client_assertion|code|token|password"
    r"|api_key|x-api-key)"
)
_SCHEME = re.compile(r"(?i)\b(Bearer|Basic|Token|MAC|DPoP)\s+[A-Za-z0-9._~+/=-]+")
_PARAM = re.compile(rf"(?i)((?:^|[?&;\s\"'{{,]){_PARAMS}(?:=|\"?\s*:\s*\"?))[^&\s\"',}}]+")


class Redactor:
    """Masks secrets in log event dicts; `add` registers literal secret values."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self._values: set[str] = set()
        self.add(*secrets)

    def add(self, *values: str | None) -> None:
        for value in values:
            if value and len(value) >= 4:  # masking tiny strings would garble ordinary text
                self._values.add(value)

    def text(self, value: str) -> str:
        for secret in self._values:
            if secret in value:
                value = value.replace(secret, MASK)
        value = _SCHEME.sub(rf"\1 {MASK}", value)
        return _PARAM.sub(rf"\1{MASK}", value)

    def value(self, key: str, value: Any) -> Any:
        if key.lower().replace("-", "_") in SECRET_KEYS and value not in (None, "", True, False):
            return MASK
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, dict):
            return {k: self.value(str(k), v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self.value(key, v) for v in value]
        if isinstance(value, BaseException):
            return self.text(f"{type(value).__name__}: {value}")
        return value

    def __call__(self, _logger: Any, _method: str, event: dict[str, Any]) -> dict[str, Any]:
        return {k: v if k in ("level", "timestamp", "logger") else self.value(k, v) for k, v in event.items()}


def configure_logging(
    level: str = "info", fmt: str = "auto", *, redactor: Redactor | None = None, stream: TextIO | None = None
) -> Redactor:
    """Configure structlog for the process; returns the redactor so secrets can be added later."""
    redactor = redactor or Redactor()
    out = stream or sys.stderr
    if fmt == "auto":
        fmt = "console" if out.isatty() else "json"
    renderer: Any = (
        structlog.dev.ConsoleRenderer(colors=out.isatty()) if fmt == "console" else structlog.processors.JSONRenderer()
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            redactor,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(getattr(logging, level.upper())),
        logger_factory=structlog.PrintLoggerFactory(file=out),
        cache_logger_on_first_use=False,
    )
    return redactor
