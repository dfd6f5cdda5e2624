"""The last N requests, for the console's request list and detail view, and the per-request trace.

Recording runs on every request, so it stores one tuple of references (the Exchange, the client's
header mapping, the headers as sent upstream) in a bounded deque: no dict, no copy, no redaction.
Everything shown is built when it is looked at, redacted by the log's Redactor (every secret of the
config in every encoding, Bearer/Basic credentials, secret parameters) plus the header names that
carry credentials, so the console and the trace show exactly what the same rules let through.
The trace (`trace:` / `authproxy run --trace`) is the same detail, logged as one line per request.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from datetime import UTC, datetime
from typing import Any

import structlog

from authproxy.clock import Clock
from authproxy.observability.logging import MASK, Redactor
from authproxy.proxy.access import KEY_HEADER
from authproxy.proxy.exchange import Exchange

log = structlog.get_logger("authproxy.trace")

# Headers that carry credentials whatever their value looks like (plus each route's injected ones).
SECRET_HEADERS = frozenset(
    ("authorization", "proxy-authorization", "cookie", "set-cookie", KEY_HEADER.lower(), "x-api-key", "api-key")
)

# One request: (id, started monotonic, duration s, method, raw path, remote address, client headers, Exchange)
Entry = tuple[int, float, float, str, str, str | None, Mapping[str, str], Exchange]


def iso(epoch: float | None) -> str | None:
    """ISO 8601 UTC to the second ("2026-12-04T11:22:47Z"): what /-/status and the console show."""
    if epoch is None:
        return None
    return datetime.fromtimestamp(round(epoch), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class RequestLog:
    """A bounded record of recent requests (`console.requests`), and the trace of the routes in `trace`."""

    def __init__(
        self,
        size: int,
        clock: Clock,
        redactor: Redactor | None = None,
        *,
        capture_bytes: int = 0,
        trace: Iterable[str] = (),
        injected: Callable[[str | None], Iterable[str]] = lambda _route: (),
    ) -> None:
        self.entries: deque[Entry] = deque(maxlen=size)
        self.clock = clock
        self.redactor = redactor or Redactor()
        self.capture_bytes = capture_bytes  # 0: bodies are not kept
        traced = frozenset(trace)
        self.trace_all = "all" in traced
        self.trace = traced or None  # None: nothing traced (one test on the hot path)
        self.injected = injected  # the header names a route injects (credentials by definition)
        self._seq = 0

    def record(
        self,
        started: float,
        ended: float,
        method: str,
        path: str,
        remote: str | None,
        headers: Mapping[str, str],
        exchange: Exchange,
    ) -> None:
        """One tuple appended; the trace line, when this route is traced, is built here (off by default)."""
        self._seq += 1
        entry = (self._seq, started, ended - started, method, path, remote, headers, exchange)
        if self.entries.maxlen:
            self.entries.append(entry)
        if self.trace is not None and (self.trace_all or exchange.route in self.trace):
            log.info("trace", **self.detail(entry))

    # -- views, built when looked at -----------------------------------------------------------

    def find(self, entry_id: int) -> Entry | None:
        for entry in self.entries:
            if entry[0] == entry_id:
                return entry
        return None

    def newest(
        self,
        *,
        route: str | None = None,
        status: str | None = None,
        client: str | None = None,
        only_client: str | None = None,
    ) -> Iterator[Entry]:
        """Newest first, filtered: `status` is a code ("404"), a class ("5xx") or "error"; `only_client`
        limits a member key to its own requests."""
        for entry in reversed(self.entries):
            exchange = entry[7]
            if only_client is not None and exchange.client != only_client:
                continue
            if route and exchange.route != route:
                continue
            if client and client not in (exchange.client, entry[5]):
                continue
            if status and not _status_matches(status, exchange):
                continue
            yield entry

    def summary(self, entry: Entry) -> dict[str, Any]:
        entry_id, started, duration, method, path, remote, _headers, exchange = entry
        wall = self.clock.now() - self.clock.monotonic() + started
        return {
            "id": entry_id,
            "time": iso(wall),
            "at": round(wall, 3),
            "client": exchange.client or remote,
            "route": exchange.route,
            "method": method,
            "path": self.redactor.text(path),
            "status": exchange.status,
            "duration_ms": round(duration * 1000, 2),
            "retried": exchange.retried,
            "error": exchange.error,
            "request_id": exchange.request_id,
        }

    def detail(self, entry: Entry) -> dict[str, Any]:
        """The summary plus the heads (client's, as sent upstream, the upstream's answer), redacted."""
        exchange = entry[7]
        secret = SECRET_HEADERS | {name.lower() for name in self.injected(exchange.route)}
        out = self.summary(entry)
        out["request"] = {"headers": self.headers(entry[6], secret)}
        if exchange.sent_head is not None:
            target, sent = exchange.sent_head
            out["upstream"] = {"target": self.redactor.text(target), "headers": self.headers(sent, secret)}  # type: ignore[arg-type]
        if exchange.response_head is not None:
            out["response"] = {"headers": self.headers(exchange.response_head, secret)}  # type: ignore[arg-type]
        if exchange.sent_at is not None and exchange.headers_at is not None:
            out["upstream_ms"] = round((exchange.headers_at - exchange.sent_at) * 1000, 2)
        if exchange.request_body is not None:
            out["request"]["body"] = self.body(exchange.request_body)
        if exchange.capture is not None:
            out.setdefault("response", {})["body"] = self.body(bytes(exchange.capture))
        out["bytes"] = exchange.bytes
        return out

    def headers(self, headers: Mapping[str, str], secret: frozenset[str] | set[str]) -> list[list[str]]:
        items = headers.items()
        return [[k, MASK if k.lower() in secret else self.redactor.text(v)] for k, v in items]

    def body(self, data: bytes) -> str:
        return self.redactor.text(data[: self.capture_bytes].decode("utf-8", "replace"))


def _status_matches(wanted: str, exchange: Exchange) -> bool:
    wanted = wanted.strip().lower()
    if wanted == "error":
        return exchange.error is not None or exchange.status >= 400
    if len(wanted) == 3 and wanted.endswith("xx"):
        return str(exchange.status)[:1] == wanted[0]
    return str(exchange.status) == wanted
