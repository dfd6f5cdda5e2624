"""structlog setup with a redaction processor that runs on every line.

Secrets are masked three ways: by key name (`client_secret=...`), by pattern inside any string
(`Bearer ...`, `refresh_token=...` in a query or form), and by value (every secret from the
config is registered, so a stray echo of it is masked too).
"""

from __future__ import annotations

import asyncio
import atexit
import base64
import json
import logging
import re
import sys
from collections.abc import Iterable
from contextvars import ContextVar
from dataclasses import dataclass
from types import NoneType
from typing import Any, Protocol, TextIO
from urllib.parse import quote, quote_plus

import structlog
from aiohttp.http_exceptions import HttpProcessingError

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
# Credentials after an auth scheme: Bearer/Basic in any case, the rarer schemes as written (so prose
# like "token endpoint" survives); credentials are at least 8 characters.
_SCHEME = re.compile(r"\b((?i:Bearer|Basic)|Token|MAC|DPoP)\s+[A-Za-z0-9._~+/=-]{8,}")
_PARAM = re.compile(rf"(?i)((?:^|[?&;\s\"'{{,]){_PARAMS}(?:=|\"?\s*:\s*\"?))[^&\s\"',}}]+")


def secret_forms(value: str) -> set[str]:
    """`value` as it may appear when something echoes it: as is, percent-encoded (either hex case),
    form-encoded, JSON-escaped and Base64 (standard and URL-safe, with and without padding).

    A secret with `+ / = & %` in it changes under every encoding, so masking only the literal value
    would let an echoed form (`client_secret=kX9%2B%2FvQ2%3DZr8%26pL`) through. Forms shorter than
    four characters are dropped (they would mask ordinary text).
    """
    forms = {value, quote(value, safe=""), quote_plus(value), json.dumps(value)[1:-1]}
    forms |= {re.sub(r"%[0-9A-F]{2}", lambda m: m.group(0).lower(), form) for form in forms if "%" in form}
    raw = value.encode("utf-8", "surrogateescape")
    for encoded in (base64.b64encode(raw).decode(), base64.urlsafe_b64encode(raw).decode()):
        forms |= {encoded, encoded.rstrip("=")}
    return {form for form in forms if len(form) >= 4}


class Redactor:
    """Masks secrets in log event dicts; `add` registers literal secret values."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self._values: list[str] = []  # longest first: a secret that contains another is masked whole
        self._pattern: re.Pattern[str] | None = None
        self.add(*secrets)

    def add(self, *values: str | None) -> None:
        known = set(self._values)
        for value in values:
            if value and len(value) >= 4:  # tiny strings: ordinary text
                known |= secret_forms(value)
        self._values = sorted(known, key=len, reverse=True)
        # One pass of one pattern over each string (every form of every secret): the access log runs this
        # on every request's path, where a loop over the forms cost three times as much.
        self._pattern = re.compile("|".join(map(re.escape, self._values))) if self._values else None

    def text(self, value: str) -> str:
        if self._pattern is not None:
            value = self._pattern.sub(MASK, value)
        if " " in value or "\t" in value:  # an auth scheme needs whitespace before its credentials
            value = _SCHEME.sub(rf"\1 {MASK}", value)
        if "=" in value or ":" in value:  # a secret parameter needs one of these before its value
            value = _PARAM.sub(rf"\1{MASK}", value)
        return value

    def value(self, key: str, value: Any) -> Any:
        if isinstance(value, int | float | NoneType):  # numbers and None are never secrets (bools included)
            return value
        if key.lower().replace("-", "_") in SECRET_KEYS and value != "":
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


class LineWriter:
    """A structlog logger that collects lines and writes them in batches.

    Under load, one flushed write per request is a syscall per request; batching lines for up to
    FLUSH_DELAY seconds (or MAX_PENDING lines) turns thousands of them into one. Outside a
    running event loop, and at exit, lines are written at once.
    """

    FLUSH_DELAY = 0.05
    MAX_PENDING = 512

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self._pending: list[str] = []
        self._scheduled = False

    def factory(self, *args: Any) -> LineWriter:
        return self

    def msg(self, message: str) -> None:
        pending = self._pending
        pending.append(message)
        if self._scheduled and len(pending) < self.MAX_PENDING:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self.flush()
            return
        if len(pending) >= self.MAX_PENDING:
            self.flush()
            return
        self._scheduled = True
        loop.call_later(self.FLUSH_DELAY, self.flush)

    log = debug = info = warn = warning = error = critical = exception = fatal = failure = err = msg

    def flush(self) -> None:
        self._scheduled = False
        if not self._pending:
            return
        lines, self._pending = self._pending, []
        try:
            self._stream.write("\n".join(lines) + "\n")
            self._stream.flush()
        except (OSError, ValueError):  # a closed stream (at exit, or a reader gone): nothing to do
            pass


@dataclass(frozen=True, slots=True)
class LogSetup:
    """What `configure_logging` built, kept so the access log and `flush_logs` use it as it is
    (instead of reading structlog's configuration back)."""

    redactor: Redactor
    writer: LineWriter
    renderer: Any
    stamper: structlog.processors.TimeStamper
    level: int
    json: bool  # structlog's JSONRenderer with its defaults: the access log may build lines itself


class RequestFields(Protocol):
    """What a line logged while a request is served says about it (proxy.exchange.Exchange)."""

    request_id: str
    route: str | None
    client: str | None


# The request being served, for every line logged while it is (the token engine's too: a task started
# during a request copies this context). One variable holding the request's record, set once per
# request: far cheaper than binding each field with structlog.contextvars.
REQUEST_CONTEXT: ContextVar[RequestFields | None] = ContextVar("authproxy_request", default=None)


def merge_request_context(_logger: Any, _method: str, event: dict[str, Any]) -> dict[str, Any]:
    """structlog processor: add the current request's id, route and client to the line."""
    request = REQUEST_CONTEXT.get()
    if request is not None:
        event.setdefault("request_id", request.request_id)
        if request.route is not None:
            event.setdefault("route", request.route)
        if request.client is not None:
            event.setdefault("client", request.client)
    return event


_setup: LogSetup | None = None  # the process's logging, like structlog's own configuration
_exit_hook = False


def current_setup() -> LogSetup | None:
    return _setup


def flush_logs() -> None:
    """Write out lines still batched (before exit, or before a test reads the log)."""
    if _setup is not None:
        _setup.writer.flush()


def configure_logging(
    level: str = "info", fmt: str = "auto", *, redactor: Redactor | None = None, stream: TextIO | None = None
) -> Redactor:
    """Configure structlog for the process; returns the redactor so secrets can be added later.

    Lines logged while a request is served carry its `request_id`, `route` and `client`
    (`REQUEST_CONTEXT`, filled in by the proxy handler). Lines still batched are written at exit (one hook).
    """
    global _setup, _exit_hook
    redactor = redactor or Redactor()
    out = stream or sys.stderr
    if fmt == "auto":
        fmt = "console" if out.isatty() else "json"
    renderer: Any = (
        structlog.dev.ConsoleRenderer(colors=out.isatty()) if fmt == "console" else structlog.processors.JSONRenderer()
    )
    stamper = structlog.processors.TimeStamper(fmt="iso", utc=True)
    writer = LineWriter(out)
    numeric = getattr(logging, level.upper())
    structlog.configure(
        processors=[
            merge_request_context,
            structlog.processors.add_log_level,
            stamper,
            structlog.processors.format_exc_info,
            redactor,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=writer.factory,
        cache_logger_on_first_use=False,
    )
    previous, _setup = _setup, LogSetup(redactor, writer, renderer, stamper, numeric, fmt == "json")
    if previous is not None:
        previous.writer.flush()
    if not _exit_hook:
        atexit.register(flush_logs)
        _exit_hook = True
    _route_stdlib_logging(writer, redactor, renderer)
    return redactor


class _ClientFaults(logging.Filter):
    """aiohttp logs each request its parser refuses as an ERROR with a traceback: the client's
    fault, not ours. Keep one warning line with the reason, without the traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, HttpProcessingError):
            record.msg, record.args, record.exc_info, record.exc_text = "bad_request_refused", (), None, None
            record.levelno, record.levelname = logging.WARNING, "WARNING"
            record.reason = type(exc).__name__
        return True


class _WriterHandler(logging.Handler):
    """Hands formatted stdlib records to the same batched writer as structlog's lines."""

    def __init__(self, writer: LineWriter) -> None:
        super().__init__()
        self.writer = writer

    def emit(self, record: logging.LogRecord) -> None:
        self.writer.msg(self.format(record))


def _route_stdlib_logging(writer: LineWriter, redactor: Redactor, renderer: Any) -> None:
    """Libraries log through stdlib logging: the same format, redaction and stream as ours."""

    def add_reason(_logger: Any, _name: str, event: dict[str, Any]) -> dict[str, Any]:
        record = event.get("_record")
        if record is not None and hasattr(record, "reason"):
            event["reason"] = record.reason
        return event

    handler = _WriterHandler(writer)
    handler.addFilter(_ClientFaults())
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[
                structlog.stdlib.add_logger_name,
                structlog.processors.add_log_level,
                structlog.processors.TimeStamper(fmt="iso", utc=True),
                add_reason,
            ],
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.format_exc_info,
                redactor,
                renderer,
            ],
        )
    )
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, _WriterHandler)]:
        root.removeHandler(old)
    root.addHandler(handler)
    if root.level == logging.NOTSET or root.level > logging.WARNING:
        root.setLevel(logging.WARNING)
