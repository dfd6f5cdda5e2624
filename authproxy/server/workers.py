"""`authproxy run --workers N`: N processes share the listening port (SO_REUSEPORT).

The supervisor reserves the port (binding without listening, SO_REUSEPORT, so port 0 becomes one
concrete port every worker binds), then starts N copies of `authproxy run` with hidden
`--worker I --worker-fd FD` options. Each worker is an ordinary single-process proxy with its own
event loop; they share tokens through the store (file: flock, redis: the Redis lock), never
through the supervisor, which sits outside the request path.

Each worker holds one end of a socket pair: it writes `ready` once listening, and reads EOF when
the supervisor dies (it then drains and exits, so no orphan keeps the port). Workers run in their
own process group, so a terminal's Ctrl-C reaches only the supervisor, which forwards SIGTERM/SIGINT
(drain and stop, once) and SIGHUP (reload, every time) to every worker and exits 0 once all have
drained. A worker that dies unexpectedly is restarted with backoff (1 s doubling to 30 s; the
backoff resets after a minute of uptime); one that dies before it ever reported ready cannot start
at all (port, TLS files, ...), so the supervisor then stops the others and exits 1.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import socket
import sys
from dataclasses import dataclass, field

import structlog
from aiohttp import web

from authproxy.clock import Clock, SystemClock, wait_event
from authproxy.config.schema import Config
from authproxy.observability.access_log import access_logger
from authproxy.observability.logging import flush_logs
from authproxy.server.runtime import PROXY
from authproxy.server.serve import serve

log = structlog.get_logger("authproxy.workers")

RESTART_INITIAL, RESTART_CAP, STABLE_AFTER = 1.0, 30.0, 60.0
KILL_GRACE = 10.0  # seconds past shutdown_timeout before a worker that will not stop is killed
FORWARDED = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


def reserve_port(host: str, port: int) -> socket.socket:
    """Bind (no listen) with SO_REUSEPORT: fixes port 0 to one port and holds it across restarts.

    A socket that never listens joins no reuseport group, so the kernel gives it no connections.
    """
    info = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0]
    sock = socket.socket(info[0], socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(info[4])
    except BaseException:
        sock.close()
        raise
    return sock


@dataclass
class Worker:
    index: int
    proc: asyncio.subprocess.Process | None = None
    channel: socket.socket | None = None  # the supervisor's end of the socket pair
    started: float = 0.0
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    exited: asyncio.Future[int] | None = None
    restarts: int = 0


class Supervisor:
    """Starts, restarts and stops the workers; forwards signals."""

    def __init__(self, argv: list[str], count: int, config: Config, clock: Clock | None = None) -> None:
        self._argv = argv  # `python -m authproxy run ...` without the worker options
        self._workers = [Worker(i) for i in range(count)]
        self._config = config
        self._clock = clock or SystemClock()
        self._stopping = asyncio.Event()
        self._changed = asyncio.Event()
        self._readers: set[asyncio.Task[None]] = set()

    async def run(self, url: str) -> int:
        loop = asyncio.get_running_loop()
        for sig in FORWARDED:
            loop.add_signal_handler(sig, self._forward, sig)
        try:
            for worker in self._workers:
                await self._start(worker)
            if not await self._all_ready():
                return await self._shutdown(1)
            log.info("workers_ready", url=url, workers=len(self._workers), pids=[w.proc.pid for w in self._workers])  # type: ignore[union-attr]
            while not self._stopping.is_set():
                self._changed.clear()
                for worker in self._workers:
                    died = worker.exited is not None and worker.exited.done() and not self._stopping.is_set()
                    if died and not await self._restart(worker):
                        return await self._shutdown(1)
                if not self._stopping.is_set():
                    await self._changed.wait()
            return await self._shutdown(0)
        finally:
            for sig in FORWARDED:
                loop.remove_signal_handler(sig)
            for task in self._readers:
                task.cancel()
            await asyncio.gather(*self._readers, return_exceptions=True)
            for worker in self._workers:
                if worker.channel is not None:
                    worker.channel.close()

    def _forward(self, sig: signal.Signals) -> None:
        """SIGHUP every time; a stop signal once (a worker already draining has no handler left)."""
        if sig != signal.SIGHUP:
            if self._stopping.is_set():
                return
            log.info("shutting_down", signal=sig.name, workers=len(self._workers))
            self._stopping.set()
            self._changed.set()
        for worker in self._workers:
            if worker.proc is not None and worker.proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    worker.proc.send_signal(sig)

    async def _start(self, worker: Worker) -> None:
        ours, theirs = socket.socketpair()
        worker.channel, worker.ready = ours, asyncio.Event()
        try:
            fd = theirs.fileno()
            worker.proc = await asyncio.create_subprocess_exec(
                *self._argv, "--worker", str(worker.index), "--worker-fd", str(fd), pass_fds=[fd], process_group=0
            )
        finally:
            theirs.close()
        worker.started = self._clock.monotonic()
        log.info("worker_started", worker=worker.index, pid=worker.proc.pid)
        if self._stopping.is_set():  # a stop signal arrived while it was starting: it was not told yet
            with contextlib.suppress(ProcessLookupError):
                worker.proc.send_signal(signal.SIGTERM)
        worker.exited = asyncio.ensure_future(worker.proc.wait())
        worker.exited.add_done_callback(lambda _: self._changed.set())
        reader = asyncio.ensure_future(self._read_ready(worker, ours))
        self._readers.add(reader)
        reader.add_done_callback(self._readers.discard)

    async def _read_ready(self, worker: Worker, channel: socket.socket) -> None:
        reader, writer = await asyncio.open_connection(sock=channel)
        line = await reader.readline()
        if line.startswith(b"ready"):
            worker.ready.set()
            self._changed.set()
        await reader.read()  # EOF when the worker exits
        writer.close()

    async def _all_ready(self) -> bool:
        """Every worker listening (True), or one exited first (False: it cannot start)."""
        while True:
            self._changed.clear()
            if all(w.ready.is_set() for w in self._workers):
                return True
            failed = [w for w in self._workers if w.exited is not None and w.exited.done() and not w.ready.is_set()]
            if failed or self._stopping.is_set():
                for worker in failed:
                    log.error("worker_failed_to_start", worker=worker.index, exit_code=worker.exited.result())  # type: ignore[union-attr]
                return False
            await self._changed.wait()

    async def _restart(self, worker: Worker) -> bool:
        assert worker.exited is not None
        code = worker.exited.result()
        if not worker.ready.is_set():
            log.error("worker_failed_to_start", worker=worker.index, exit_code=code)
            return False
        uptime = self._clock.monotonic() - worker.started
        worker.restarts = 0 if uptime >= STABLE_AFTER else worker.restarts + 1
        delay = min(RESTART_CAP, RESTART_INITIAL * 2 ** max(0, worker.restarts - 1)) if worker.restarts else 0.0
        log.error("worker_exited", worker=worker.index, exit_code=code, restart_in=delay)
        if not await wait_event(self._clock, self._stopping, delay):
            await self._start(worker)
            self._changed.set()
        return True

    async def _shutdown(self, code: int) -> int:
        """Stop every worker (they drain in-flight requests); 0 only if all exited cleanly."""
        if not self._stopping.is_set():
            self._forward(signal.SIGTERM)
        live = [w for w in self._workers if w.exited is not None]
        pending = {w.exited for w in live if w.exited is not None and not w.exited.done()}
        timer = asyncio.ensure_future(self._clock.sleep(self._config.shutdown_timeout + KILL_GRACE))
        while pending and not timer.done():
            await asyncio.wait([*pending, timer], return_when=asyncio.FIRST_COMPLETED)
            pending = {f for f in pending if not f.done()}
        timer.cancel()
        for worker in live:
            if worker.proc is not None and worker.proc.returncode is None:
                log.error("worker_killed", worker=worker.index, detail="it did not stop within shutdown_timeout")
                with contextlib.suppress(ProcessLookupError):
                    worker.proc.kill()
                await worker.proc.wait()
        codes = [w.proc.returncode for w in live if w.proc is not None]
        # -SIGTERM: a worker stopped before it could install its handlers (it served nothing yet).
        if code == 0 and any(c not in (0, -signal.SIGTERM) for c in codes):
            code = 1
        log.info("stopped", workers=len(self._workers), exit_codes=codes)
        flush_logs()
        return code


def supervise(args: argparse.Namespace, config: Config, host: str, port: int) -> int:
    """Reserve the port, run the workers until a signal, return the exit code."""
    try:
        reserved = reserve_port(host, port)
    except OSError as exc:
        print(f"--listen: cannot bind {host}:{port}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    with reserved:
        bound = reserved.getsockname()[1]
        listen = f"[{host}]:{bound}" if ":" in host else f"{host}:{bound}"
        argv = [sys.executable, "-m", "authproxy", "run", "-c", args.config, "--listen", listen]
        argv += ["--workers", str(args.workers)]
        for option in ("log_format", "log_level"):
            if getattr(args, option):
                argv += [f"--{option.replace('_', '-')}", getattr(args, option)]
        for route in getattr(args, "trace", None) or ():
            argv += ["--trace", route]
        scheme = "https" if config.tls.cert_file else "http"
        url = f"{scheme}://{'[' + host + ']' if ':' in host else host}:{bound}"
        supervisor = Supervisor(argv, args.workers, config)
        return asyncio.run(supervisor.run(url))


async def run_worker(app: web.Application, host: str, port: int, index: int, fd: int) -> None:
    """One worker: serve with SO_REUSEPORT, say `ready` on the channel, stop when the supervisor is gone."""
    structlog.configure(processors=[_add_worker(index), *structlog.get_config()["processors"]])
    proxy = app[PROXY]
    if proxy.access_log is not None:  # its fast path skips the processors: name the worker there too
        proxy.access_log = access_logger(fields={"worker": index})
    channel = socket.socket(fileno=fd)
    reader, writer = await asyncio.open_connection(sock=channel)
    stop = asyncio.Event()

    async def watch_supervisor() -> None:
        await reader.read()  # returns at EOF: the supervisor exited
        if not stop.is_set():
            log.warning("supervisor_gone", detail="draining and exiting")
            stop.set()

    watcher = asyncio.ensure_future(watch_supervisor())
    try:
        await serve(app, host, port, stop=stop, reuse_port=True, on_ready=lambda url: writer.write(b"ready\n"))
    finally:
        watcher.cancel()
        writer.close()


def _add_worker(index: int) -> structlog.types.Processor:
    def add(logger: object, method: str, event: dict[str, object]) -> dict[str, object]:
        event.setdefault("worker", index)
        return event

    return add
