"""NO_PROXY as curl reads it: which hosts are reached directly, not through the egress proxy.

Entries are separated by commas (or spaces): `*` (every host), a host name (`example.com` and `.example.com` both
match the name and every subdomain, as curl does; `*.example.com` is read the same way), an IP address, a CIDR
range (`10.0.0.0/8`, `fd00::/8`), and any of these with `:port` (then only that port). Names are compared as
names and addresses as addresses: no DNS lookup is made. An entry that is none of these is kept aside in
`invalid`, so whoever built the list can name it (a config error, or a warning for the environment's NO_PROXY).
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

_NAME = re.compile(r"^[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?(\.[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?)*$")
_HOST_PORT = re.compile(r"^(\[[^\]]+\]|[^:]+):(\d{1,5})$")
IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True, slots=True)
class _Entry:
    text: str  # as written, for messages and /-/status
    name: str | None = None  # a host name, lower case, no leading dot
    network: IpNetwork | None = None  # an address is a /32 or /128
    port: int | None = None

    def matches(self, host: str, address: ipaddress.IPv4Address | ipaddress.IPv6Address | None, port: int) -> bool:
        if self.port is not None and self.port != port:
            return False
        if self.network is not None:
            return address is not None and address in self.network
        name = self.name or ""
        return address is None and (host == name or host.endswith("." + name))


class NoProxy:
    """The parsed list; `match(host, port)` is the entry that sends that host direct, or None."""

    __slots__ = ("entries", "every", "invalid")

    def __init__(self, text: str | tuple[str, ...] | list[str] = "") -> None:
        items = re.split(r"[,\s]+", text if isinstance(text, str) else ",".join(text))
        self.entries: list[_Entry] = []
        self.invalid: list[str] = []
        self.every = False
        for item in items:
            if not item:
                continue
            if item == "*":
                self.every = True
                continue
            entry = _parse(item)
            if entry is None:
                self.invalid.append(item)
            else:
                self.entries.append(entry)

    def match(self, host: str, port: int) -> str | None:
        """The entry (as written) under which `host:port` goes direct; None: through the proxy."""
        if self.every:
            return "*"
        host = host.lower().rstrip(".").strip("[]")
        try:
            address: ipaddress.IPv4Address | ipaddress.IPv6Address | None = ipaddress.ip_address(host)
        except ValueError:
            address = None
        for entry in self.entries:
            if entry.matches(host, address, port):
                return entry.text
        return None

    def __bool__(self) -> bool:
        return self.every or bool(self.entries)


def _parse(item: str) -> _Entry | None:
    """One entry, or None when it is not a host, an address, a range or one of them with :port."""
    port: int | None = None
    body = item.lower()
    if (found := _HOST_PORT.match(body)) is not None and not _is_network(body):
        body, port = found.group(1), int(found.group(2))
        if not 0 < port < 65536:
            return None
    body = body.strip("[]")
    if "/" in body or _is_address(body):
        try:
            return _Entry(item, network=ipaddress.ip_network(body, strict=False), port=port)
        except ValueError:
            return None
    name = body.removeprefix("*.").lstrip(".").rstrip(".")
    if not _NAME.match(name):
        return None
    return _Entry(item, name=name, port=port)


def _is_address(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def _is_network(text: str) -> bool:
    """An IPv6 address or range without brackets has colons that are not a port's."""
    return text.count(":") > 1 and not text.startswith("[")
