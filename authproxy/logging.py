"""structlog setup with a redaction processor that runs on every line.

Secrets are masked three ways: by key name (`client_secret=...`), by pattern inside any string
(`Bearer ...`, `refresh_token=...` in a query or form), and by value (every secret from the
config is registered, so a stray echo of it is masked too).
"""

from __future__ import annotations

import asyncio
import atexit
import json
import logging
import math
import re
import sys
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from json.encoder import encode_basestring_ascii as _json_str  # json.dumps's own (C) string encoder
from types import NoneType
from typing import Any, TextIO

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


class Redactor:
    """Masks secrets in log event dicts; `add` registers literal secret values."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self._values: list[str] = []  # longest first: a secret that contains another is masked whole
        self.add(*secrets)

    def add(self, *values: str | None) -> None:
        known = set(self._values)
        known.update(value for value in values if value and len(value) >= 4)  # tiny strings: ordinary text
        self._values = sorted(known, key=len, reverse=True)

    def text(self, value: str) -> str:
        for secret in self._values:
            if secret in value:
                value = value.replace(secret, MASK)
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
        atexit.register(self.flush)

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


def flush_logs() -> None:
    """Write out lines still batched (before exit, or before a test reads the log)."""
    writer = getattr(structlog.get_config()["logger_factory"], "__self__", None)
    if isinstance(writer, LineWriter):
        writer.flush()


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
    writer = LineWriter(out)
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
        logger_factory=writer.factory,
        cache_logger_on_first_use=False,
    )
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


class AccessLog:
    """Writes access lines through the configured renderer and writer, skipping structlog's chain.

    One line per request is the hottest logging there is; its fields are known (numbers, the
    route name, a validated request id), so only the path needs the redactor. The line looks
    exactly like any other log line. With the plain JSON renderer the line is built here,
    byte for byte what `json.dumps` would write, with the timestamp's date and time part
    formatted once a second: this halves the cost of a line (it was a tenth of a request's CPU).
    """

    def __init__(
        self, renderer: Any, writer: LineWriter, redactor: Redactor, stamper: Any, fields: dict[str, Any] | None = None
    ) -> None:
        self._renderer, self._writer, self._redactor, self._stamper = renderer, writer, redactor, stamper
        self._fields = fields or {}  # added to every line (a worker's index)
        self._fast = plain_json(renderer) and _iso_utc(stamper)
        self._second, self._stamp = -1, ""

    def __call__(self, event: dict[str, Any]) -> None:
        """`event` is the line's fields ("event": "request", ..., "path": raw path); it is consumed."""
        event["path"] = self._redactor.text(event["path"])
        if self._fields:
            event.update(self._fields)
        event["level"] = "info"
        if self._fast:
            self._writer.msg(self.json_line(event, time.time()))
        else:
            self._writer.msg(self._renderer(None, "info", self._stamper(None, "info", event)))

    def json_line(self, event: dict[str, Any], now: float) -> str:
        """`json.dumps(event | {"timestamp": iso(now)})`, without json.dumps's generic machinery."""
        second = int(now)
        if second != self._second:
            self._second = second
            self._stamp = datetime.fromtimestamp(second, UTC).strftime("%Y-%m-%dT%H:%M:%S")
        micros = int((now - second) * 1_000_000)
        stamp = f"{self._stamp}.{micros:06d}Z" if micros else f"{self._stamp}Z"  # as isoformat() writes it
        fields = []
        add = fields.append
        for key, value in event.items():  # keys are the handler's own identifiers: nothing to escape
            kind = type(value)
            if kind is str:
                add(f'"{key}": {_json_str(value)}')
            elif kind is int or (kind is float and value - value == 0):  # finite floats (inf - inf is nan)
                add(f'"{key}": {value!r}')
            else:
                add(f'"{key}": {_json_value(value)}')
        add(f'"timestamp": "{stamp}"')
        return "{" + ", ".join(fields) + "}"


def plain_json(renderer: Any) -> bool:
    """True for structlog's JSONRenderer with its default serializer and options (what we configure)."""
    return (
        type(renderer) is structlog.processors.JSONRenderer
        and getattr(renderer, "_dumps", None) is json.dumps
        and set(getattr(renderer, "_dumps_kw", {"?": None})) == {"default"}
    )


def _iso_utc(stamper: Any) -> bool:
    return getattr(stamper, "fmt", None) == "iso" and getattr(stamper, "utc", False) and stamper.key == "timestamp"


def _json_value(value: Any) -> str:
    """One JSON value as json.dumps writes it (ensure_ascii, float repr)."""
    if isinstance(value, str):
        return _json_str(value)
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if type(value) is int or (type(value) is float and math.isfinite(value)):
        return repr(value)
    return json.dumps(value, default=str)


def access_logger(fields: dict[str, Any] | None = None) -> Callable[[dict[str, Any]], None] | None:
    """The access logger for the current logging setup; None when info lines are filtered out.

    `fields` are added to every line (structlog processors do not run on this path).
    """
    config = structlog.get_config()
    wrapper = config["wrapper_class"]
    if getattr(getattr(wrapper, "info", None), "__name__", "") == "_nop":
        return None
    factory = config["logger_factory"]
    writer = getattr(factory, "__self__", None)
    processors = config["processors"]
    redactors = [p for p in processors if isinstance(p, Redactor)]
    stampers = [p for p in processors if isinstance(p, structlog.processors.TimeStamper)]
    if not isinstance(writer, LineWriter) or not redactors or not stampers:
        log = structlog.get_logger("authproxy.proxy")
        return lambda event: log.info(**event, **(fields or {}))
    return AccessLog(processors[-1], writer, redactors[0], stampers[0], fields)
