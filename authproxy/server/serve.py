"""Run the app until SIGTERM/SIGINT, then stop accepting and drain in-flight requests."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Callable

import structlog
from aiohttp import web

from authproxy.config.checks import is_loopback
from authproxy.config.schema import split_listen
from authproxy.observability.logging import flush_logs
from authproxy.server.listener import JsonErrorRunner, listener_ssl
from authproxy.server.reload import reload_config
from authproxy.server.runtime import RUNTIME

log = structlog.get_logger("authproxy.server")


async def start_server(
    app: web.Application, host: str, port: int, *, reuse_port: bool = False
) -> tuple[web.AppRunner, str]:
    """Start listening; returns the runner (for cleanup) and the base URL actually bound.

    `reuse_port`: SO_REUSEPORT, so several worker processes share the port and the kernel spreads
    connections across them.
    """
    config = app[RUNTIME].config
    runner = JsonErrorRunner(
        app,
        handler_cancellation=True,
        access_log=None,
        shutdown_timeout=config.shutdown_timeout,
        keepalive_timeout=config.limits.client_timeout,  # also bounds a slow client's request headers
        max_line_size=config.limits.max_header_size,
        max_field_size=config.limits.max_header_size,
    )
    await runner.setup()
    runtime = app[RUNTIME]
    try:
        ssl_context = listener_ssl(config.tls)
        await web.TCPSite(runner, host, port, backlog=1024, ssl_context=ssl_context, reuse_port=reuse_port).start()
        if runtime.config.admin.listen is not None:
            admin_host, admin_port = split_listen(runtime.config.admin.listen)
            main_sockets = len(runner.addresses)  # `localhost` may bind two (::1 and 127.0.0.1)
            await web.TCPSite(runner, admin_host, admin_port, reuse_port=reuse_port).start()
            runtime.admin_port = runner.addresses[main_sockets][1]
            log.info("admin_listening", url=f"http://{_host_for_url(admin_host)}:{runtime.admin_port}/-/status")
    except BaseException:
        await runner.cleanup()
        raise
    bound_host, bound_port = runner.addresses[0][:2]
    scheme = "https" if config.tls.cert_file else "http"
    runtime.url = f"{scheme}://{_host_for_url(bound_host)}:{bound_port}"
    return runner, runtime.url


async def serve(
    app: web.Application,
    host: str,
    port: int,
    *,
    stop: asyncio.Event | None = None,
    reuse_port: bool = False,
    on_ready: Callable[[str], None] | None = None,
) -> None:
    """Serve `app` on host:port until SIGTERM/SIGINT (or `stop`), then drain and return.

    `on_ready(url)` is called once listening (a worker tells its supervisor).
    """
    config = app[RUNTIME].config
    runner, url = await start_server(app, host, port, reuse_port=reuse_port)
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    reloads: set[asyncio.Task[object]] = set()

    def reload_on_hup() -> None:
        task = loop.create_task(reload_config(app))
        reloads.add(task)
        task.add_done_callback(reloads.discard)

    try:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        loop.add_signal_handler(signal.SIGHUP, reload_on_hup)
        log.info("listening", url=url, routes={r.prefix: r.upstream for r in config.routes.values()})
        if not is_loopback(host):
            log.warning(
                "open_to_the_network",
                url=url,
                detail="allow_anonymous is set: anyone who can reach this "
                "address uses the configured credentials; keep it on a private network",
            )
        if on_ready is not None:
            on_ready(url)
        await stop.wait()
        log.info("shutting_down", drain_timeout_s=config.shutdown_timeout)
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            loop.remove_signal_handler(sig)
        await runner.cleanup()  # stops listening, waits for in-flight requests up to shutdown_timeout
    log.info("stopped")
    flush_logs()


def _host_for_url(host: str) -> str:
    return f"[{host}]" if ":" in host else host
