"""Pure header functions: what is dropped, added and rewritten between client and upstream."""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping

from multidict import CIMultiDict, CIMultiDictProxy

from authproxy.errors import BadRequest

# RFC 9110 §7.6.1 hop-by-hop headers, plus Host (set from the upstream URL by the client).
HOP_BY_HOP = frozenset(
    (
        "connection",
        "keep-alive",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "proxy-connection",
        "proxy-authenticate",
        "proxy-authorization",
        "host",
    )
)
REQUEST_ID = "X-Request-ID"
_REQUEST_ID_OK = re.compile(r"^[A-Za-z0-9._:/+=@-]{1,200}$")


def route_drop_set(injected: Iterable[str], *, pass_client_auth: bool) -> frozenset[str]:
    """Lower-case request header names never forwarded for a route.

    Client credentials could be confused with the injected ones, so `Authorization` and every
    header the route injects are removed unless the route opts out.
    """
    drop = set(HOP_BY_HOP)
    drop.add("expect")  # the proxy answers 100-continue itself; the upstream gets the whole body
    drop.add("x-authproxy-key")  # a team member's proxy key never leaves the proxy
    if not pass_client_auth:
        drop.add("authorization")
        drop.update(name.lower() for name in injected)
    return frozenset(drop)


def _connection_listed(headers: CIMultiDictProxy[str]) -> set[str]:
    """Header names that a Connection header marks as hop-by-hop (RFC 9110 §7.6.1)."""
    listed: set[str] = set()
    for value in headers.getall("connection", ()):
        listed.update(token.strip().lower() for token in value.split(",") if token.strip())
    return listed


def upstream_request_headers(
    incoming: CIMultiDictProxy[str],
    drop: frozenset[str],
    *,
    forwarded_for: str | None,
    proto: str,
    host: str,
    request_id: str,
) -> CIMultiDict[str]:
    """Headers for the upstream request: client headers minus `drop` and hop-by-hop, plus X-Forwarded-*."""
    extra_drop = _connection_listed(incoming) if "connection" in incoming else ()
    out: CIMultiDict[str] = CIMultiDict()
    previous_for = None
    for name, value in incoming.items():
        low = name.lower()
        if low in drop or low.startswith("proxy-") or low in extra_drop:
            continue
        if low in ("x-forwarded-proto", "x-forwarded-host", "x-request-id"):  # replaced below
            continue
        if not value.isascii() and not _utf8(value):  # would be silently mangled on the way out
            raise BadRequest(f"the value of header {name!r} is not valid UTF-8")
        if low == "x-forwarded-for":
            previous_for = value if previous_for is None else f"{previous_for}, {value}"
            continue
        out.add(name, value)
    if forwarded_for:
        out["X-Forwarded-For"] = f"{previous_for}, {forwarded_for}" if previous_for else forwarded_for
    elif previous_for:
        out["X-Forwarded-For"] = previous_for
    out["X-Forwarded-Proto"] = proto
    out["X-Forwarded-Host"] = host
    out[REQUEST_ID] = request_id
    return out


def _utf8(value: str) -> bool:
    """False for header values that held bytes which were not UTF-8 (decoded as lone surrogates)."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def response_headers(upstream: CIMultiDictProxy[str], out: CIMultiDict[str] | None = None) -> CIMultiDict[str]:
    """Upstream response headers minus hop-by-hop ones, added to `out`; repeated ones (Set-Cookie) kept."""
    extra_drop = _connection_listed(upstream) if "connection" in upstream else ()
    if out is None:
        out = CIMultiDict()
    for name, value in upstream.items():
        low = name.lower()
        if low in HOP_BY_HOP or low in extra_drop:
            continue
        out.add(name, value)
    return out


def request_id_from(incoming: Mapping[str, str]) -> str:
    """The client's X-Request-ID when it is sane, else a new one."""
    given = incoming.get(REQUEST_ID)
    if given is not None and _REQUEST_ID_OK.match(given):
        return given
    return os.urandom(16).hex()  # 128 random bits, 4x cheaper than uuid4().hex


def rewrite_location(location: str, *, origin: str, base_path: str, prefix: str, proxy_origin: str) -> str:
    """Point a redirect at the proxy when it points into the route's upstream.

    `origin`/`base_path` describe the upstream; `prefix` is the route's prefix ("" for "/").
    Locations elsewhere are returned unchanged: the client follows them itself.
    """
    if location.startswith("/") and not location.startswith("//"):
        rest = _under(location, base_path)
        return location if rest is None else prefix + rest if prefix + rest else "/"
    if location.lower().startswith(origin.lower()):
        tail = location[len(origin) :]
        if tail == "" or tail[0] in "/?#":
            rest = _under(tail or "/", base_path)
            if rest is not None:
                return proxy_origin + (prefix + rest or "/")
    return location


def _under(path: str, base: str) -> str | None:
    """The part of `path` below `base`, or None when it is not below it."""
    if not base:
        return path
    if path == base or (path[len(base) : len(base) + 1] in ("/", "?", "#") and path.startswith(base)):
        return path[len(base) :]
    return None
