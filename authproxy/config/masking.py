"""What may be shown of a config: masked() for display, secret_values() for the log redactor.

Apart from the schema so that each stays one job: the schema declares which fields are secrets
(`secret=True`), this module is the one place that acts on it.
"""

from __future__ import annotations

import base64
import dataclasses
import re
from typing import Any
from urllib.parse import quote_plus, unquote, urlsplit

from authproxy.config.redis_url import redis_secrets
from authproxy.config.schema import Config, EgressProxyConfig

MASKED = "********"
_URL_PASSWORD = re.compile(r"(://[^/?#@:]*:)[^/?#@]*@")


def masked(obj: Any) -> Any:
    """Plain data for display (`authproxy check`), every secret replaced by a mask."""
    if not dataclasses.is_dataclass(obj):
        return obj
    out: dict[str, Any] = {}
    for f in dataclasses.fields(obj):
        if f.metadata.get("internal"):
            continue
        value = getattr(obj, f.name)
        if isinstance(value, dict):
            value = {k: masked(v) for k, v in value.items()}
            if f.metadata.get("secret"):
                value = {k: MASKED if v else "" for k, v in value.items()}
        elif f.metadata.get("secret") and value:
            value = MASKED
        elif isinstance(value, str) and "@" in value:  # a URL's user:password (an egress proxy's)
            value = _URL_PASSWORD.sub(rf"\1{MASKED}@", value)
        else:
            value = masked(value)
        out[f.name] = value
    return out


def secret_values(config: Config) -> list[str]:
    """Every secret string in the config, for the log redactor."""
    found: list[str] = []

    def walk(obj: Any) -> None:
        for f in dataclasses.fields(obj):
            value = getattr(obj, f.name)
            if dataclasses.is_dataclass(value):
                walk(value)
            elif isinstance(value, dict):
                for item in value.values():
                    if dataclasses.is_dataclass(item):
                        walk(item)
                    elif f.metadata.get("secret") and isinstance(item, str):
                        found.append(item)
            elif f.metadata.get("secret") and isinstance(value, str):
                found.append(value)

    walk(config)
    found.extend(redis_secrets(config.store.url))  # the password inside store.url, on its own
    for route in config.routes.values():  # the Basic header a client_secret_basic request carries
        auth = route.auth
        if auth.client_id and auth.client_secret:
            plain, encoded = auth.client_id + ":" + auth.client_secret, f"{quote_plus(auth.client_id)}:"
            for pair in (plain, encoded + quote_plus(auth.client_secret)):
                found.append(base64.b64encode(pair.encode()).decode())
    for egress in [config.egress_proxy, *(route.egress_proxy for route in config.routes.values())]:
        found.extend(egress_proxy_secrets(egress))
    return [s for s in found if s]


def egress_proxy_secrets(egress: EgressProxyConfig | None) -> list[str]:
    """An egress proxy's password (in its url or its own key) in every form it is sent: user:password, Basic."""
    if egress is None:
        return []
    user, password = egress.username or "", egress.password or ""
    if egress.url and "@" in egress.url:
        parts = urlsplit(egress.url if "://" in egress.url else "http://" + egress.url)
        user, password = unquote(parts.username or ""), unquote(parts.password or "")
    if not password:
        return []
    pair = f"{user}:{password}"
    return [password, pair, base64.b64encode(pair.encode()).decode()]
