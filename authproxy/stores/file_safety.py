"""The file store's defences against whoever else can write near the token file.

Anyone who can write the store directory could plant `tokens.json.lock` (or a per-key lock file,
or the token file itself) as a symbolic link: opening it with O_CREAT would create a file wherever
the link points, with our privileges. So the store opens every file it reads or locks with
O_NOFOLLOW and uses it only if it is a regular file (a planted FIFO would block a read); the temp
file it writes is created with O_EXCL (mkstemp) and renamed over the token file, and neither
follows a link.

At startup `permission_problems` names what makes the store unsafe to trust: a directory others
may write to or that another user owns (they could replace the token file), or a token file another
user owns (they could have written the tokens in it). The store refuses to start over them unless
`store.allow_shared_permissions` says the sharing is deliberate.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)  # POSIX; elsewhere links are not followed into anyway
NONBLOCK = getattr(os, "O_NONBLOCK", 0)  # opening a planted FIFO must not block
CLOEXEC = getattr(os, "O_CLOEXEC", 0)
OPT_IN = "or set store.allow_shared_permissions: true to start anyway, with a warning"


class StoreFileError(OSError):
    """The token file exists but cannot be used; it is left untouched. `field` is the config key to fix."""

    def __init__(self, message: str, *, field: str = "path") -> None:
        super().__init__(message)
        self.message = message
        self.field = field

    def __str__(self) -> str:
        return self.message


def linked(path: Path) -> StoreFileError:
    """The error for a symbolic link where the store keeps a file of its own."""
    return StoreFileError(
        f"{path} is a symbolic link; authproxy never opens its token or lock files through a link "
        f"(a planted one could make it create or open a file elsewhere): remove it (rm {path}) and check "
        f"who can write to {path.parent}; to keep the tokens elsewhere, point store.path there"
    )


def open_nofollow(path: Path, flags: int) -> int:
    """os.open without following a link (StoreFileError names it), refusing anything but a regular file."""
    try:
        fd = os.open(path, flags | NOFOLLOW | NONBLOCK | CLOEXEC, 0o600)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.EMLINK) and path.is_symlink():
            raise linked(path) from None
        raise
    try:
        regular = stat.S_ISREG(os.fstat(fd).st_mode)
    except BaseException:
        os.close(fd)
        raise
    if not regular:
        os.close(fd)
        raise StoreFileError(
            f"{path} is not a regular file; authproxy keeps its tokens and locks in plain files: "
            f"move it away (mv {path} {path}.bad) and check who can write to {path.parent}"
        )
    return fd


def planted_links(path: Path) -> list[Path]:
    """The token file and its lock files (`<name>.lock`, `<name>.<key>-<hash>.lock`) that are links."""
    try:
        names = os.listdir(path.parent)
    except (FileNotFoundError, NotADirectoryError):
        return []
    ours = [n for n in names if n == path.name or (n.startswith(path.name + ".") and n.endswith(".lock"))]
    return sorted(path.parent / n for n in ours if (path.parent / n).is_symlink())


def permission_problems(path: Path, *, private_dir: bool) -> list[str]:
    """What lets another user change the store under `path` (empty: nothing); never raises for a missing file.

    `private_dir`: the directory is authproxy's own (the default location): one of ours that is not
    0700 is tightened, as every write does, rather than reported.
    """
    if not hasattr(os, "geteuid"):  # pragma: no cover - Windows: no POSIX owners and modes
        return []
    euid, parent, problems = os.geteuid(), path.parent, []
    try:
        info = parent.stat()
    except FileNotFoundError:
        info = None  # created 0700 on the first write
    if info is not None and private_dir and info.st_uid == euid and stat.S_IMODE(info.st_mode) != 0o700:
        parent.chmod(0o700)
        info = parent.stat()
    if info is not None:
        mode = stat.S_IMODE(info.st_mode)
        if info.st_uid not in (euid, 0):
            problems.append(
                f"the store directory {parent} is owned by uid {info.st_uid}, not by this process (uid {euid}), "
                f"so that user can replace the token file: chown {euid} {parent} and chmod 700 {parent}, "
                "or point store.path at a directory of your own"
            )
        if mode & 0o022:
            problems.append(
                f"the store directory {parent} is writable by group or others (mode {mode:04o}), so they can "
                f"replace the token file or plant files it opens: chmod 700 {parent}, "
                "or point store.path at a private directory"
            )
    try:
        file_info = os.lstat(path)
    except FileNotFoundError:
        return problems
    if not stat.S_ISLNK(file_info.st_mode) and file_info.st_uid != euid:
        problems.append(
            f"the token file {path} is owned by uid {file_info.st_uid}, not by this process (uid {euid}), so "
            f"another user may have written the tokens in it: if it is yours, chown {euid} {path}; "
            f"if not, move it away (mv {path} {path}.bad) and log in again"
        )
    return problems
