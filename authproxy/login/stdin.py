"""Reading the pasted redirect URL of `authproxy login --no-browser`, and knowing when none can come.

With stdin closed or at its end (a CI job, `< /dev/null`), waiting for a paste would wait out the
whole timeout; `stdin_can_paste` tells that at once, without consuming anything.
"""

from __future__ import annotations

import asyncio
import os
import select
import stat
import sys
import threading
from collections.abc import Awaitable, Callable

ReadLine = Callable[[], Awaitable[str | None]]  # the next pasted line; None at end of input


def stdin_can_paste() -> bool:
    """False when nothing can ever be pasted: stdin closed, /dev/null, an empty file, a finished pipe."""
    stream = sys.stdin
    if stream is None or stream.closed:
        return False
    try:
        fd = stream.fileno()
        if os.isatty(fd):
            return True
        mode = os.fstat(fd).st_mode
        if stat.S_ISCHR(mode):  # /dev/null and the like: at end of input at once
            return False
        if stat.S_ISREG(mode):
            return os.lseek(fd, 0, os.SEEK_CUR) < os.fstat(fd).st_size
        if stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode):
            readable, _, _ = select.select([fd], [], [], 0)
            return not readable or _pending(fd) > 0  # readable with nothing pending: the writer has gone
    except (OSError, ValueError):
        return False
    return True


def _pending(fd: int) -> int:
    """Bytes waiting to be read on a pipe or socket (FIONREAD)."""
    import array
    import fcntl
    import termios

    count = array.array("i", [0])
    fcntl.ioctl(fd, termios.FIONREAD, count, True)
    return count[0]


def stdin_reader() -> ReadLine:
    """Lines from stdin, read by a daemon thread (a blocked read never keeps the process alive)."""
    queue: asyncio.Queue[str | None] | None = None
    loop: asyncio.AbstractEventLoop | None = None

    def pump() -> None:
        assert loop is not None and queue is not None
        try:
            for line in sys.stdin:
                loop.call_soon_threadsafe(queue.put_nowait, line)
            loop.call_soon_threadsafe(queue.put_nowait, None)
        except RuntimeError:  # the loop has closed: the login is over
            return

    async def read() -> str | None:
        nonlocal queue, loop
        if queue is None:
            queue, loop = asyncio.Queue(), asyncio.get_running_loop()
            threading.Thread(target=pump, name="authproxy-stdin", daemon=True).start()
        return await queue.get()

    return read
