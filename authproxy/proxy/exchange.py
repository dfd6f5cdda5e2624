"""The record of one proxied request, filled in as it goes: for the access log and the metrics."""

from __future__ import annotations


class Exchange:
    """What happened to one request (status, bytes sent back, error code, retry, timings)."""

    __slots__ = ("bytes", "client", "error", "headers_at", "prepared_at", "retried", "route", "sent_at", "status")

    def __init__(self) -> None:
        self.status = 0
        self.bytes = 0
        self.error: str | None = None
        self.retried = False
        self.route: str | None = None
        self.client: str | None = None
        self.sent_at: float | None = None  # first byte sent upstream
        self.headers_at: float | None = None  # final upstream response headers received
        self.prepared_at: float | None = None  # our response headers sent to the client
