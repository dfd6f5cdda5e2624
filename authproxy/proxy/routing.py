"""Map a raw request target to a route and the upstream target, refusing anything unsafe.

Works on the raw, still percent-encoded target so the upstream receives the path and query
byte-for-byte as the client sent them.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING
from urllib.parse import unquote_to_bytes

from yarl import URL

from authproxy.config.schema import RouteConfig
from authproxy.errors import AbsoluteFormRefused, BadPath, RouteNotFound
from authproxy.proxy.headers import route_drop_set
from authproxy.upstream.egress import EgressChoice
from authproxy.upstream.tls import TlsSettings
from authproxy.upstream.transport import Endpoint, Transport

if TYPE_CHECKING:
    from authproxy.credentials.credential import Credential


@dataclass(slots=True, eq=False)
class Route:
    """A configured route with everything the hot path needs precomputed."""

    config: RouteConfig
    credential: Credential | None = None  # set when the app starts (and kept across reloads when unchanged)
    transport: Transport = field(init=False)  # set when the app starts: how requests reach the upstream
    name: str = field(init=False)
    prefix: str = field(init=False)
    match_prefix: str = field(init=False)  # "" for the root prefix "/"
    upstream: URL = field(init=False)
    origin: str = field(init=False)  # scheme://host[:port] of the upstream
    base_path: str = field(init=False)  # upstream path without trailing "/", still encoded
    inject: dict[str, str] = field(init=False)
    drop: frozenset[str] = field(init=False)
    tls: TlsSettings = field(init=False)  # how the upstream's certificate is checked (and ours shown)
    endpoint: Endpoint = field(init=False)  # where the transport connects
    max_concurrent: int | None = field(init=False)
    egress: EgressChoice | None = None  # which egress proxy the upstream is reached through, and why (status)
    token_egress: EgressChoice | None = None  # the same for the token endpoint, when there is one

    def __post_init__(self) -> None:
        cfg = self.config
        self.name = cfg.name
        self.prefix = cfg.prefix
        self.match_prefix = "" if cfg.prefix == "/" else cfg.prefix
        self.upstream = URL(cfg.upstream)
        self.origin = str(self.upstream.origin())
        self.base_path = self.upstream.raw_path.rstrip("/")
        self.inject = dict(cfg.headers)
        self.drop = route_drop_set(cfg.headers, pass_client_auth=cfg.pass_client_auth)
        self.tls = TlsSettings.from_config(cfg.tls, f"routes.{cfg.name}.tls")
        self.endpoint = Endpoint(self.upstream, self.tls)
        self.max_concurrent = cfg.max_concurrent

    def upstream_target(self, remainder: str, query: str | None) -> str:
        """The upstream request target (path and query) for the part after the prefix, encoded as received."""
        path = self.base_path + remainder if remainder else (self.base_path or "/")
        if path[0] != "/":  # prefix "/x" with target "/x" and base "" → "/"
            path = "/" + path
        return path if query is None else f"{path}?{query}"

    def upstream_url(self, remainder: str, query: str | None) -> URL:
        """The same as a URL on the upstream's origin (for websockets)."""
        return URL(self.origin + self.upstream_target(remainder, query), encoded=True)


class Router:
    """Longest match on whole path segments over the configured prefixes."""

    def __init__(self, routes: list[Route]) -> None:
        # Longest prefix first, so the first hit is the longest match.
        self.routes = sorted(routes, key=lambda r: len(r.match_prefix), reverse=True)
        self.by_name = {r.name: r for r in routes}

    def match(self, raw_target: str, visible: Callable[[str], bool] | None = None) -> tuple[Route, str, str | None]:
        """Return (route, remainder of the path after the prefix, raw query or None).

        `visible` limits which route names a "not found" message may list (team mode).
        """
        if not raw_target.startswith("/"):
            if raw_target == "*":
                raise BadPath("the asterisk target (OPTIONS *) is not proxied; name a route path")
            raise AbsoluteFormRefused(
                "absolute-form request targets are refused: authproxy is not an open proxy; "
                "send the path only, e.g. GET /<route>/..."
            )
        if "#" in raw_target:  # never valid in a request target; it could hide a dot-segment
            raise BadPath("a request target must not contain '#'")
        path, sep, query = raw_target.partition("?")
        if path.startswith("/-/"):
            raise RouteNotFound("no such admin endpoint; /-/ is reserved for authproxy's own endpoints")
        for route in self.routes:
            p = route.match_prefix
            if path.startswith(p) and (len(path) == len(p) or path[len(p)] == "/"):
                remainder = path[len(p) :]
                if ("." in remainder or "%" in remainder or "\\" in remainder) and (
                    problem := path_problem(remainder)
                ) is not None:
                    raise BadPath(problem, route=route.name)
                return route, remainder, (query if sep else None)
        shown = [r.prefix for r in self.routes if visible is None or visible(r.name)]
        available = ", ".join(sorted(shown)) or "(none)"
        raise RouteNotFound(f"no route serves this path; available prefixes: {available}")


MAX_DECODE_ROUNDS = 8  # percent-decoding rounds before a still-changing path is refused
# Overlong UTF-8: a lead byte with a continuation that a shorter form could have spelled (`%c0%ae` is
# '.', `%c0%af` '/', `%e0%80%ae` '.'). Strict decoders refuse them; lenient ones decode them to the
# character they hide, so an upstream (or a filter behind it) might see `..` where we saw none.
OVERLONG = re.compile(rb"[\xc0\xc1][\x80-\xbf]|\xe0[\x80-\x9f]|\xf0[\x80-\x8f]|\xf8[\x80-\x87]|\xfc[\x80-\x83]")
U_ESCAPE = re.compile(rb"%u[0-9a-f]{4}", re.IGNORECASE)  # IIS's %uXXXX: not percent-encoding, decoded by some


def path_problem(remainder: str) -> str | None:
    """Why the (encoded) remainder is refused, or None: a climb, a NUL, an overlong or `%u` spelling.

    Each segment is percent-decoded to a fixpoint (at most MAX_DECODE_ROUNDS rounds, so no depth of
    encoding can hide `..`), and what it decodes to is checked. NUL, overlong UTF-8 and `%u` are
    refused wherever they are, climbing or not: upstreams disagree on what they mean (a NUL ends a
    C string, a lenient decoder turns `%c0%ae` into '.'), and no legitimate client sends them. Once
    present, each survives further decoding, so checking the fixpoint covers every depth. Decoded `/`
    or `\\` split a segment further, since some upstreams decode those too; `;params` are ignored,
    as servlet containers ignore them. Messages say what was refused, never the path itself.
    """
    depth = 0
    for segment in remainder.split("/"):
        decoded = segment.encode()
        for _ in range(MAX_DECODE_ROUNDS):
            once = unquote_to_bytes(decoded)
            if once == decoded:
                break
            decoded = once
        else:
            if unquote_to_bytes(decoded) != decoded:
                return (
                    f"the path is percent-encoded more than {MAX_DECODE_ROUNDS} levels deep; "
                    "encode it once (a client never needs more)"
                )
        if b"\x00" in decoded:
            return "the path holds an encoded NUL byte (%00); no path may contain one"
        if OVERLONG.search(decoded):
            return (
                "the path holds an overlong UTF-8 sequence (like %c0%ae for '.'), a known way to hide "
                "'..' or '/'; percent-encode the shortest UTF-8 form"
            )
        if U_ESCAPE.search(decoded):
            return "the path holds a %uXXXX escape (IIS-style, not percent-encoding); percent-encode UTF-8 instead"
        for part in decoded.replace(b"\\", b"/").split(b"/"):
            part = part.split(b";", 1)[0]  # `..;x` is `..` to Tomcat and Spring (path parameters)
            if part == b"..":
                depth -= 1
                if depth < 0:
                    return "the path climbs out of the route with dot-segments ('..')"
            elif part not in (b"", b"."):
                depth += 1
    return None
