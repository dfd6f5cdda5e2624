"""TLS towards upstreams and token endpoints: one settings object, one cached context per settings.

`TlsSettings` is what a route's `tls:` says (verification, a private CA, a client certificate for
mutual TLS). Every outbound exchange (proxied requests, websockets, token requests) takes its
context from here, whichever transport sends it.
"""

from __future__ import annotations

import functools
import ssl
from dataclasses import dataclass
from pathlib import Path

from authproxy.config.schema import UpstreamTLS
from authproxy.errors import ConfigError


@dataclass(frozen=True, slots=True)
class TlsSettings:
    """How the peer's certificate is checked and which client certificate is shown."""

    verify: bool = True
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None

    @classmethod
    def from_config(cls, tls: UpstreamTLS, where: str) -> TlsSettings:
        """The settings of a `tls:` section, with the files loaded once now: ConfigError names `where`."""
        settings = cls(tls.verify, tls.ca_file, tls.cert_file, tls.key_file)
        try:
            settings.context()
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError([(where, f"cannot load the TLS files: {exc}; check they are PEM and readable")]) from None
        return settings

    def context(self) -> ssl.SSLContext:
        """The SSL context for these settings (built on first use, then shared)."""
        return _context(self)


@functools.cache
def _context(settings: TlsSettings) -> ssl.SSLContext:
    if not settings.verify:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        return context
    context = ssl.create_default_context(cafile=_path(settings.ca_file))
    if settings.cert_file is not None:
        context.load_cert_chain(_path(settings.cert_file), _path(settings.key_file))  # type: ignore[arg-type]
    return context


def _path(value: str | None) -> str | None:
    return None if value is None else str(Path(value).expanduser())
