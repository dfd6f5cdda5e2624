"""Hot reload: re-read the config file and swap routes without dropping tokens or requests.

An invalid config leaves the running one in place and reports every problem. A route whose
`auth` settings did not change keeps its credential (and so its token: no new token request);
in-flight requests hold their old `Route` and finish on the old config; credentials that are
no longer used are closed once their in-flight fetch is done.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

import structlog
from aiohttp import web

from authproxy.config.load import load_config
from authproxy.config.masking import secret_values
from authproxy.credentials.credential import Credential
from authproxy.credentials.identity import identity_fields, store_key
from authproxy.errors import ConfigError
from authproxy.proxy.access import BrowserGuard, Gatekeeper
from authproxy.proxy.routing import Router
from authproxy.server.runtime import PROXY, RUNTIME

log = structlog.get_logger("authproxy.reload")

RESTART_ONLY = ("listen", "allow_anonymous", "store", "shutdown_timeout", "log", "admin", "tls", "console")


@dataclass
class ReloadResult:
    status: int
    problems: list[tuple[str, str]] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)  # routes whose credential (and token) carried over
    renewed: list[str] = field(default_factory=list)  # routes with new or changed credentials
    removed: list[str] = field(default_factory=list)
    restart_needed: list[str] = field(default_factory=list)  # changed keys that only a restart applies
    message: str = ""

    def body(self) -> dict[str, Any]:
        if self.status != 200:
            error: dict[str, Any] = {
                "code": "config_invalid" if self.problems else "reload_unavailable",
                "message": self.message,
                "route": None,
                "request_id": None,
            }
            if self.problems:
                error["problems"] = [{"path": p, "message": m} for p, m in self.problems]
            return {"error": error}
        return {
            "reloaded": True,
            "kept_credentials": self.kept,
            "new_credentials": self.renewed,
            "removed_routes": self.removed,
            "restart_needed": self.restart_needed,
        }


async def reload_config(app: web.Application) -> ReloadResult:
    """Re-read the file the app was started from and apply it; never raises for a bad config."""
    runtime = app[RUNTIME]
    if runtime.config_path is None:
        return ReloadResult(409, message="this proxy was not started from a config file; nothing to reload")
    try:
        config = load_config(runtime.config_path)
        for warning in config.load_warnings:  # e.g. a variable whose value still looks like ${OTHER}
            log.warning("config_warning", detail=warning)
        old = runtime.router.by_name
        routes, built, stale_keys = [], [], []
        try:
            for cfg in config.routes.values():  # build everything first: nothing starts or is deleted yet
                previous = old.get(cfg.name)
                # a credential is kept only while its token requests would still go the same way (egress_proxy)
                same_egress = previous is not None and (
                    previous.config.egress_proxy or runtime.config.egress_proxy
                ) == (cfg.egress_proxy or config.egress_proxy)
                if previous is not None and previous.config.auth == cfg.auth and same_egress:
                    route = runtime.new_route(cfg, keep=previous.credential, config=config)
                else:
                    if previous is not None and identity_fields(previous.config.auth) != identity_fields(cfg.auth):
                        stale_keys.append(store_key(cfg.name))  # a token for another client or scope
                    route = runtime.new_route(cfg, config=config)
                    if route.credential is not None:
                        built.append(route.credential)
                routes.append(route)
            for key in stale_keys:
                await runtime.store.delete(key)
        except BaseException:  # a bad config, or the store failing: none of the new credentials may linger
            for credential in built:
                await credential.close()
            raise
        for credential in built:
            credential.start()
    except OSError as exc:  # the store could not drop a token that belongs to the old client
        log.error("reload_failed", error=type(exc).__name__, detail="the token store failed")
        return ReloadResult(
            503, message=f"the token store failed ({type(exc).__name__}); the running config stays in place"
        )
    except ConfigError as err:
        log.error("reload_failed", problems=[f"{p}: {m}" for p, m in err.problems])
        return ReloadResult(
            400,
            problems=err.problems,
            message=f"the new config has {len(err.problems)} problem(s); the running config stays in place",
        )

    restart_needed = [key for key in RESTART_ONLY if getattr(config, key) != getattr(runtime.config, key)]
    if config.limits.upstream_connections != runtime.config.limits.upstream_connections:
        restart_needed.append("limits.upstream_connections")  # the pools are made with it
    if not set(config.trace) <= set(runtime.config.trace):  # the running set includes `run --trace` routes
        restart_needed.append("trace")
    result = ReloadResult(200, restart_needed=restart_needed)
    in_use = {r.credential for r in routes if r.credential is not None}
    for route in routes:
        previous = old.get(route.name)
        if route.credential is None:
            continue
        (result.kept if previous is not None and previous.credential is route.credential else result.renewed).append(
            route.name
        )
    result.removed = sorted(set(old) - set(config.routes))
    router = Router(routes)
    gate = Gatekeeper(config, runtime.clock)
    runtime.config, runtime.router, runtime.gate, runtime.guard = config, router, gate, BrowserGuard(config)
    runtime.discovery.clear()  # auth.issuer documents are fetched again, at each route's next token request
    proxy = app[PROXY]
    proxy.router, proxy.gate, proxy.limits = router, gate, config.limits
    if runtime.redactor is not None:
        runtime.redactor.add(*secret_values(config))
    for previous in old.values():
        if previous.credential is not None and previous.credential not in in_use:
            _retire(runtime.retired, previous.credential)
    log.info(
        "reloaded",
        routes=sorted(config.routes),
        kept_credentials=result.kept,
        new_credentials=result.renewed,
        removed_routes=result.removed,
        restart_needed=result.restart_needed,
    )
    return result


def _retire(retired: dict[Credential, asyncio.Task[None]], credential: Credential) -> None:
    """Close a replaced credential once any fetch an old in-flight request waits on is done."""

    async def close_when_idle() -> None:
        await credential.wait_idle()
        await credential.close()
        retired.pop(credential, None)

    retired[credential] = asyncio.get_running_loop().create_task(close_when_idle())
