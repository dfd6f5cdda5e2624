"""`authproxy status`: each route's token state and expiry, like `gcloud auth list`.

Asked of the running proxy's `/-/status` (at the config's listen address, or admin.listen, with
the admin key when one is configured); when no proxy answers, read from the token store. Accepts
timestamps as epoch numbers or ISO 8601 strings, so it reads the /-/status of any version.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import ssl
import time
import urllib.error
import urllib.request
from datetime import UTC, datetime
from typing import Any

from authproxy.cli.common import setup_logging
from authproxy.config.checks import is_loopback
from authproxy.config.load import load_config
from authproxy.config.schema import Config, split_listen
from authproxy.shell import Invocation, shell_quote

STATUS_TIMEOUT = 3.0  # seconds: a local proxy answers at once


class ProxyRefused(Exception):
    """A proxy answers at the address but will not show its status (say why, then read the store)."""


def cmd_status(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    setup_logging(config, "console", "error")
    url = status_url(config)
    note = ""
    try:
        document = fetch_status(url, config.admin.key)
    except ProxyRefused as exc:
        document, note = None, f"the proxy at {shell_quote(url)} answered: {exc}"
    except OSError:
        document, note = None, f"no proxy answers at {shell_quote(url)}"
    if document is not None:
        rows = [from_proxy(route) for route in document.get("routes", [])]
        source = {"source": "proxy", "url": url}
    else:
        rows, where = asyncio.run(from_store(config))
        source = {"source": "store", "store": where, "note": note}
    if args.json:
        print(json.dumps({**source, "routes": rows}, indent=2))
        return 0
    if document is not None:
        print(f"from the running proxy at {shell_quote(url)}")
    else:
        run = Invocation.of(args).command("run")
        print(f"{note}; from the token store ({source['store']}). Start the proxy: {run}")
    print(render(rows))
    return 0


def status_url(config: Config) -> str:
    listen = config.admin.listen or config.listen
    host, port = split_listen(listen)
    if host in ("0.0.0.0", "::"):
        host = "127.0.0.1"
    scheme = "https" if config.tls.cert_file and not config.admin.listen else "http"
    return f"{scheme}://{'[' + host + ']' if ':' in host else host}:{port}/-/status"


def fetch_status(url: str, admin_key: str | None) -> dict[str, Any]:
    headers = {"Accept": "application/json"}
    if admin_key:
        headers["Authorization"] = f"Bearer {admin_key}"
    context = None
    if url.startswith("https:") and is_loopback(urllib.request.urlparse(url).hostname or ""):
        context = ssl._create_unverified_context()  # our own loopback listener, often a self-signed certificate
    request = urllib.request.Request(url, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=STATUS_TIMEOUT, context=context) as response:
            document = json.loads(response.read())
    except urllib.error.HTTPError as exc:
        if exc.code == 401:
            raise ProxyRefused(
                "401, the admin key is needed: set admin.key (or admin.key_file) in this config"
            ) from None
        raise ProxyRefused(f"HTTP {exc.code}; is it an authproxy?") from None
    except ValueError:
        raise ProxyRefused("not JSON; is it an authproxy?") from None
    if not isinstance(document, dict) or not isinstance(document.get("routes"), list):
        raise ProxyRefused("no routes in its /-/status; is it an authproxy?")
    return document


def from_proxy(route: dict[str, Any]) -> dict[str, Any]:
    """A row from one /-/status route: state, expiry (ISO 8601 UTC), what to do."""
    token = route.get("token") or {}
    expires_at = timestamp(token.get("expires_at"))
    if expires_at is None and isinstance(token.get("expires_in"), int | float):
        expires_at = time.time() + token["expires_in"]
    detail = token.get("message") or token.get("last_error_detail") or ""
    return {
        "route": route.get("name"),
        "grant": route.get("grant"),
        "state": token.get("state", "no token needed") if token else "no token needed",
        "expires_at": iso(expires_at),
        "expires_in": None if expires_at is None else max(0, round(expires_at - time.time())),
        "detail": detail,
    }


async def from_store(config: Config) -> tuple[list[dict[str, Any]], str]:
    from authproxy.credentials.identity import store_key
    from authproxy.stores.build import build_store

    store = build_store(config)
    rows = []
    try:
        for route in config.routes.values():
            row: dict[str, Any] = {"route": route.name, "grant": route.auth.grant, "expires_at": None}
            row["expires_in"], row["detail"] = None, ""
            if route.auth.grant == "none":
                row["state"] = "no token needed"
            elif route.auth.grant == "static":
                row["state"] = "static token"
            elif store.kind == "memory":
                row["state"], row["detail"] = "unknown", "tokens are kept in the proxy's memory only"
            else:
                token = await store.load(store_key(route.name))
                if token is None:
                    row["state"] = "nothing stored"
                else:
                    valid = token.expires_at is None or token.expires_at > time.time()
                    row["state"] = "valid" if valid else "expired"
                    if not valid and token.refresh_token:
                        row["detail"] = "the proxy renews it with the stored refresh token"
                    row["expires_at"] = iso(token.expires_at)
                    if token.expires_at is not None:
                        row["expires_in"] = max(0, round(token.expires_at - time.time()))
            rows.append(row)
        return rows, store.where()
    finally:
        await store.close()


def timestamp(value: Any) -> float | None:
    """Epoch seconds from an epoch number or an ISO 8601 string (`2026-12-04T11:22:47Z`)."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str) and value:
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
        return (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).timestamp()
    return None


def iso(epoch: float | None) -> str | None:
    if epoch is None:
        return None
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def render(rows: list[dict[str, Any]]) -> str:
    table = [("ROUTE", "GRANT", "STATE", "EXPIRES")]
    for row in rows:
        expires = "-" if row["expires_at"] is None else f"{row['expires_at']} (in {duration(row['expires_in'])})"
        table.append((str(row["route"]), str(row["grant"]), str(row["state"]), expires))
    widths = [max(len(r[i]) for r in table) for i in range(3)]
    lines = ["  ".join(cell.ljust(widths[i]) for i, cell in enumerate(r[:3])) + "  " + r[3] for r in table]
    out = []
    for line, row in zip(lines, [None, *rows], strict=True):
        out.append(line.rstrip())
        if row is not None and row["detail"]:
            out.append(f"    {row['detail']}")
    return "\n".join(out)


def duration(seconds: int | None) -> str:
    if not seconds:
        return "0 s"
    if seconds < 120:
        return f"{seconds} s"
    if seconds < 7200:
        return f"{seconds // 60} min"
    return f"{seconds // 3600} h {seconds % 3600 // 60} min"
