"""A Postman collection (v2.1) and environment that point at the proxy, with no provider secret.

One folder per route, its base URL a `{{base_<route>}}` variable (the environment sets it to the
proxy), Auth "No Auth": the proxy injects the credentials. In team mode the collection sends
`Authorization: Bearer {{authproxy_key}}`, a variable the environment leaves empty for each member
to fill in with their own proxy key.
"""

from __future__ import annotations

import re
import uuid
from typing import Any

from authproxy.config.schema import Config, split_listen

SCHEMA = "https://schema.getpostman.com/json/collection/v2.1.0/collection.json"
KEY_VARIABLE = "authproxy_key"
NAMESPACE = uuid.UUID("6f1c3a51-1d8e-4c25-9a3f-5b7f3f0d8a11")  # stable ids: re-exports replace, not duplicate


def proxy_base(config: Config) -> str:
    """Where clients reach the proxy, from `listen` (a wildcard address is reached as 127.0.0.1)."""
    host, port = split_listen(config.listen)
    if host in ("0.0.0.0", "::", ""):
        host = "127.0.0.1"
    if ":" in host:
        host = f"[{host}]"
    scheme = "https" if config.tls.cert_file else "http"
    return f"{scheme}://{host}:{port}"


def variable(route: str) -> str:
    return "base_" + re.sub(r"[^A-Za-z0-9_]", "_", route)


def collection(config: Config, base: str, name: str = "authproxy") -> dict[str, Any]:
    team = bool(config.clients)
    folders = []
    for cfg in config.routes.values():
        prefix = cfg.prefix.rstrip("/")
        url = "{{" + variable(cfg.name) + "}}/"
        request = {
            "method": "GET",
            "header": [],
            "url": {"raw": url, "host": ["{{" + variable(cfg.name) + "}}"], "path": [""]},
            "description": f"GET {prefix}/ through authproxy ({cfg.upstream}); add requests to this folder.",
        }
        folders.append(
            {
                "name": cfg.name,
                "description": f"Route {cfg.name}: {prefix}/... -> {cfg.upstream} (credentials injected by the proxy)",
                "item": [{"name": f"GET {prefix}/", "request": request}],
            }
        )
    auth: dict[str, Any] = {"type": "noauth"}
    if team:
        auth = {"type": "bearer", "bearer": [{"key": "token", "value": "{{" + KEY_VARIABLE + "}}", "type": "string"}]}
    return {
        "info": {
            "_postman_id": str(uuid.uuid5(NAMESPACE, f"collection:{name}:{base}")),
            "name": name,
            "description": f"Requests through authproxy at {base}: no provider secret in here.",
            "schema": SCHEMA,
        },
        "auth": auth,
        "item": folders,
    }


def environment(config: Config, base: str, name: str = "authproxy") -> dict[str, Any]:
    values = [
        {"key": variable(cfg.name), "value": base + cfg.prefix.rstrip("/"), "type": "default", "enabled": True}
        for cfg in config.routes.values()
    ]
    if config.clients:
        values.append({"key": KEY_VARIABLE, "value": "", "type": "secret", "enabled": True})
    return {
        "id": str(uuid.uuid5(NAMESPACE, f"environment:{name}:{base}")),
        "name": name,
        "values": values,
        "_postman_variable_scope": "environment",
    }
