"""TLS contexts: verification and client certificates towards upstreams, and the listener's own."""

from __future__ import annotations

import ssl
from pathlib import Path

from authproxy.config.schema import UpstreamTLS
from authproxy.errors import ConfigError


def upstream_ssl(tls: UpstreamTLS, where: str) -> ssl.SSLContext | bool:
    """What aiohttp's `ssl=` gets: True (system CAs), False (verify: false) or a context."""
    if not tls.verify:
        return False
    if tls.ca_file is None and tls.cert_file is None:
        return True
    try:
        context = ssl.create_default_context(cafile=_path(tls.ca_file))
        if tls.cert_file is not None:
            context.load_cert_chain(_path(tls.cert_file), _path(tls.key_file))  # type: ignore[arg-type]
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError([(where, f"cannot load the TLS files: {exc}; check they are PEM and readable")]) from None
    return context


def _path(value: str | None) -> str | None:
    return None if value is None else str(Path(value).expanduser())
