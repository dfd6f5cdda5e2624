"""The request head the native client writes: the target byte for byte, `Host`, the body's framing.

Nothing else is added. A CR or LF anywhere in the head (target, a header name or value, from a client,
the config or a token endpoint) is refused before anything is sent.
"""

from __future__ import annotations

from multidict import CIMultiDict

from authproxy.upstream.transport import Body, UnsafeHeaderError

NO_BODY_METHODS = frozenset(("GET", "HEAD", "OPTIONS", "TRACE", "CONNECT", "DELETE"))


def request_head(method: str, target: str, headers: CIMultiDict[str], body: Body, host: str) -> bytes:
    """The request line and headers, framed for `body` (the framing headers are set in `headers`)."""
    lines = [f"{method} {target} HTTP/1.1\r\n"]
    if "Host" not in headers:
        lines.append(f"Host: {host}\r\n")
    if isinstance(body, bytes):
        headers["Content-Length"] = str(len(body))
    elif body is None:
        if method not in NO_BODY_METHODS and "Content-Length" not in headers:
            headers["Content-Length"] = "0"
    elif "Content-Length" not in headers:
        headers["Transfer-Encoding"] = "chunked"
    for name, value in headers.items():
        lines.append(f"{name}: {value}\r\n")
    lines.append("\r\n")
    head = "".join(lines)
    # A CR or LF inside the target, a name or a value would end a line early (request smuggling): each
    # line holds exactly one of each, so counting them checks every part at once.
    if head.count("\n") != len(lines) or head.count("\r") != len(lines):
        raise UnsafeHeaderError(_line_break(target, headers))
    return head.encode("utf-8", "surrogateescape")  # the target's bytes exactly as the client sent them


def _line_break(target: str, headers: CIMultiDict[str]) -> str:
    """Which part of the head holds a line break (never its value)."""
    for name, value in headers.items():
        if "\n" in name or "\r" in name:
            return f"a header name for the upstream contains a line break ({name.splitlines()[0]!r}...)"
        if "\n" in value or "\r" in value:
            return f"the value of header {name!r} for the upstream contains a line break"
    return "the request target contains a line break"
