"""The file store: tokens survive restarts and are shared by a proxy and the CLI on one machine.

One JSON file holds every key. A write is a read-modify-write under an exclusive `flock` on a
sibling `<file>.lock`, finished by an atomic replace (temp file in the same directory, fsync,
rename, fsync of the directory), so a proxy and `authproxy login` never lose each other's
updates and a reader sees the old file or the new one, never half of one. `lock(key)` takes a
separate lock file per key, held while a token is fetched, so a refresh in one process waits
for one in another (a rotating refresh token is used once).

The file is 0600 and directories it creates are 0700. No file is opened through a symbolic link,
and a directory others may write to, or a token file another user owns, is refused at startup
(`verify`) unless `allow_shared_permissions` (see `file_safety`). With an `encryption_key` the tokens
are Fernet-encrypted at rest (`crypto`, the `encrypt` extra). A file that cannot be read back
(corrupt, wrong key) raises `StoreFileError` and is never replaced: only the user may throw tokens away.

File I/O is synchronous on purpose: the file is a few KB, the write lock is only ever held for
one read-modify-write (never across a network call), and sync I/O keeps tests deterministic.
Only waiting for another process's `lock(key)` moves to a thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import re
import stat
import tempfile
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import structlog

from authproxy.credentials.tokens import Token, token_entry, token_from_entry
from authproxy.stores.base import TokenStore
from authproxy.stores.crypto import CannotDecrypt, decrypt, encrypt, make_cipher
from authproxy.stores.file_safety import (
    OPT_IN,
    StoreFileError,
    linked,
    open_nofollow,
    permission_problems,
    planted_links,
)

try:  # POSIX; elsewhere only in-process locking is available
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

log = structlog.get_logger("authproxy.stores")

FORMAT = "authproxy-tokens"
VERSION = 1


def default_path(env: Mapping[str, str] | None = None) -> Path:
    """`$XDG_STATE_HOME/authproxy/tokens.json`, else `~/.local/state/authproxy/tokens.json`."""
    env = os.environ if env is None else env
    state = env.get("XDG_STATE_HOME", "")
    base = Path(state) if state and Path(state).is_absolute() else Path.home() / ".local" / "state"
    return base / "authproxy" / "tokens.json"


LOCK_TIMEOUT = 30.0  # seconds to wait for another process's lock on a key (it holds it for one token request)


class FileStore(TokenStore):
    """Tokens in one JSON file; safe to share between processes on one machine."""

    kind = "file"

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        encryption_key: str | None = None,
        private_dir: bool = False,
        allow_shared_permissions: bool = False,
        lock_timeout: float = LOCK_TIMEOUT,
    ) -> None:
        """`private_dir`: the parent directory is ours (the default location): keep it 0700.
        `allow_shared_permissions`: `verify` warns about a shared directory or a foreign file instead of refusing."""
        super().__init__()
        self.path = Path(path).expanduser()
        self.lock_timeout = lock_timeout
        self._cipher = make_cipher(encryption_key) if encryption_key else None
        self._private_dir = private_dir
        self._allow_shared = allow_shared_permissions

    def where(self) -> str:
        return str(self.path)

    def __repr__(self) -> str:
        return f"FileStore({str(self.path)!r}, encrypted={self._cipher is not None})"

    # -- TokenStore --------------------------------------------------------------------------------

    async def load(self, key: str) -> Token | None:
        entry = self._read().get(key)
        return None if entry is None else self._token(key, entry)

    async def save(self, key: str, token: Token) -> None:
        entry = token_entry(token)

        def put(tokens: dict[str, Any]) -> bool:
            tokens[key] = entry
            return True

        self._modify(put)

    async def delete(self, key: str) -> None:
        self._modify(lambda tokens: tokens.pop(key, None) is not None)

    @contextlib.asynccontextmanager
    async def shared_lock(self, key: str) -> AsyncIterator[None]:
        """A lock file per key, so a renewal in one process waits for one in another."""
        self._ensure_dir()
        fd = await _flock_async(self._lock_path(key), self.lock_timeout)
        try:
            yield
        finally:
            os.close(fd)  # releases the flock

    # -- extras ------------------------------------------------------------------------------------

    def keys(self) -> list[str]:
        """Stored keys (for tests and status; never the tokens)."""
        return sorted(self._read())

    def verify(self) -> None:
        """At startup, raise StoreFileError rather than fail on first use: a planted link, shared
        permissions (a warning with `allow_shared_permissions`), a file that cannot be read."""
        links = planted_links(self.path)
        if links:
            raise linked(links[0])
        problems = permission_problems(self.path, private_dir=self._private_dir)
        if problems and not self._allow_shared:
            raise StoreFileError("; ".join(problems) + f"; {OPT_IN}")
        for problem in problems:
            log.warning(
                "token_store_permissions", problem=problem, detail="store.allow_shared_permissions is set: starting"
            )
        self._read()
        with contextlib.suppress(OSError):  # an old file readable by others: tighten it (never through a link)
            fd = open_nofollow(self.path, os.O_RDONLY)
            try:
                mode = os.fstat(fd).st_mode
                if mode & 0o077:
                    os.fchmod(fd, stat.S_IMODE(mode) & 0o600)
            finally:
                os.close(fd)

    # -- internals ---------------------------------------------------------------------------------

    def _lock_path(self, key: str) -> Path:
        safe = re.sub(r"[^A-Za-z0-9_.-]", "_", key)[:40]
        digest = hashlib.sha256(key.encode()).hexdigest()[:8]
        return self.path.with_name(f"{self.path.name}.{safe}-{digest}.lock")

    def _modify(self, change: Callable[[dict[str, Any]], bool]) -> None:
        """Read-modify-write under the write lock; `change` returns whether to write."""
        self._ensure_dir()
        with _flock(self.path.with_name(self.path.name + ".lock")):
            tokens = self._read()
            if change(tokens):
                self._write(tokens)

    def _read(self) -> dict[str, Any]:
        try:
            fd = open_nofollow(self.path, os.O_RDONLY)
        except FileNotFoundError:
            return {}
        with os.fdopen(fd, "rb") as file:
            raw = file.read()
        if not raw.strip():
            return {}  # an empty file holds nothing to lose
        return self._decode(raw)

    def _decode(self, raw: bytes) -> dict[str, Any]:
        doc = _json(raw)
        if not isinstance(doc, dict) or doc.get("format") != FORMAT:
            raise self._corrupt("not JSON written by authproxy")
        if doc.get("version") != VERSION:
            raise StoreFileError(
                f"{self.path} was written by another authproxy version (file format {doc.get('version')!r}); "
                "upgrade authproxy, or move the file away and log in again"
            )
        if "encrypted" in doc:
            doc = self._decrypt(doc["encrypted"])
        tokens = doc.get("tokens")
        if not isinstance(tokens, dict):
            raise self._corrupt("no token table")
        for key, entry in tokens.items():  # all of it: a write must not carry a broken entry along
            self._token(key, entry)
        return tokens

    def _decrypt(self, data: Any) -> Any:
        if self._cipher is None:
            raise StoreFileError(
                f"{self.path} is encrypted; set store.encryption_key (or encryption_key_file) "
                "to the key it was written with",
                field="encryption_key",
            )
        try:
            plain = decrypt(self._cipher, data)
        except CannotDecrypt:
            raise StoreFileError(
                f"{self.path} cannot be decrypted with the configured store.encryption_key (wrong key?); "
                "set the key it was written with, or move the file away and log in again",
                field="encryption_key",
            ) from None
        doc = _json(plain)
        if not isinstance(doc, dict):
            raise self._corrupt("the decrypted content is not a token table")
        return doc

    def _token(self, key: str, entry: Any) -> Token:
        try:
            return token_from_entry(entry)
        except TypeError:
            raise self._corrupt(f"the entry for {key!r} is not a token") from None

    def _corrupt(self, why: str) -> StoreFileError:
        return StoreFileError(
            f"{self.path} is not a usable token file ({why}); it was left untouched: move it away "
            f"(mv {self.path} {self.path}.bad) and run `authproxy login` again, or restore it from a backup"
        )

    def _write(self, tokens: dict[str, Any]) -> None:
        doc: dict[str, Any] = {"format": FORMAT, "version": VERSION}
        if self._cipher is not None:
            doc["encrypted"] = encrypt(self._cipher, json.dumps({"tokens": tokens}).encode())
        else:
            doc["tokens"] = tokens
        data = json.dumps(doc, indent=1, sort_keys=True).encode()
        parent = self.path.parent
        fd, tmp = tempfile.mkstemp(dir=parent, prefix=f".{self.path.name}.", suffix=".tmp")  # created 0600
        try:
            with os.fdopen(fd, "wb") as file:
                file.write(data)
                file.flush()
                os.fsync(file.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        _fsync_dir(parent)

    def _ensure_dir(self) -> None:
        parent = self.path.parent
        if not parent.is_dir():
            missing = [p for p in (parent, *parent.parents) if not p.exists()]
            for directory in reversed(missing):  # every level we create is private, whatever the umask
                with contextlib.suppress(FileExistsError):
                    directory.mkdir(mode=0o700)
                    directory.chmod(0o700)
        elif self._private_dir and stat.S_IMODE(parent.stat().st_mode) != 0o700:
            parent.chmod(0o700)


def _json(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        return None


def _open_lock(path: Path) -> int:
    return open_nofollow(path, os.O_RDWR | os.O_CREAT)  # a planted link is refused, never followed


@contextlib.contextmanager
def _flock(path: Path) -> Iterator[None]:
    """Exclusive lock for one read-modify-write; other holders only ever hold it that briefly."""
    fd = _open_lock(path)
    try:
        if fcntl is not None:
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


async def _flock_async(path: Path, timeout: float) -> int:
    """Exclusive lock held across awaits, polled without blocking a thread.

    Bounded by `timeout`: a holder that is stopped (Ctrl-Z, a debugger) must not hang renewals
    and shutdown; the OSError it raises is a transient store failure to the credential.
    """
    fd = _open_lock(path)
    if fcntl is None:  # pragma: no cover - Windows
        return fd
    loop = asyncio.get_running_loop()
    deadline, pause = loop.time() + timeout, 0.002
    try:
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return fd
            except BlockingIOError:
                if loop.time() >= deadline:
                    raise StoreLockTimeout(
                        f"{path} stayed locked by another process for {timeout:g} s; is a stopped authproxy holding it?"
                    ) from None
                await asyncio.sleep(pause)  # clock-ok: waiting for another process, which no test clock drives
                pause = min(pause * 2, 0.05)
    except BaseException:
        os.close(fd)
        raise


class StoreLockTimeout(OSError):
    """The token file's lock was not free in time."""


def _fsync_dir(path: Path) -> None:
    """Make the rename itself durable (a crash must not bring the old file back)."""
    with contextlib.suppress(OSError):  # not every platform or filesystem allows it
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
