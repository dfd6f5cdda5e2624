"""The record of one proxied request, filled in as it goes: for the access log, the metrics, and every
line logged while it is served (it is what `observability.logging.REQUEST_CONTEXT` holds)."""

from __future__ import annotations


class Exchange:
    """What happened to one request (status, bytes sent back, error code, retry, timings)."""

    __slots__ = (
        "bytes",
        "capture",
        "capture_limit",
        "client",
        "error",
        "headers_at",
        "prepared_at",
        "request_body",
        "request_id",
        "response_head",
        "retried",
        "route",
        "sent_at",
        "sent_head",
        "status",
    )

    def __init__(self, request_id: str) -> None:
        self.request_id = request_id
        self.status = 0
        self.bytes = 0
        self.error: str | None = None
        self.retried = False
        self.route: str | None = None
        self.client: str | None = None
        self.sent_at: float | None = None  # first byte sent upstream
        self.headers_at: float | None = None  # final upstream response headers received
        self.prepared_at: float | None = None  # our response headers sent to the client
        # For the console and the trace (proxy/recorder.py): references only, never copied on the hot path.
        self.sent_head: tuple[str, object] | None = None  # (upstream target, headers as sent: credentials in)
        self.response_head: object = None  # the upstream's response headers
        self.request_body: bytes | None = None  # kept only when console.capture_bodies is set
        self.capture: bytearray | None = None  # the response body's first bytes, when capture_bodies is set
        self.capture_limit = 0
