"""FileStore specifics: permissions, atomic writes under concurrent writers (real processes),
cross-process locks, corrupt files and wrong keys (the file is always kept), and `build_store`."""

from __future__ import annotations

import asyncio
import contextlib
import os
import stat
import sys
import textwrap
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

from authproxy.config.load import parse_config
from authproxy.config.masking import masked
from authproxy.credentials.tokens import Token
from authproxy.errors import ConfigError
from authproxy.stores.build import build_store
from authproxy.stores.file import FileStore, StoreFileError, StoreLockTimeout, default_path
from authproxy.stores.memory import MemoryStore
from tests.fakes import settle

ROOT = Path(__file__).resolve().parents[2]


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def config(store: str, grant: str = "authorization_code") -> object:
    auth = {
        "authorization_code": "{grant: authorization_code, token_url: /t, authorize_url: /a, client_id: c, "
        "client_secret: s}",
        "client_credentials": "{grant: client_credentials, token_url: /t, client_id: c, client_secret: s}",
    }[grant]
    return parse_config(f"store: {store}\nroutes:\n  api: {{upstream: 'http://127.0.0.1:9', auth: {auth}}}\n", env={})


async def test_file_is_0600_and_created_directories_0700_whatever_the_umask(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "tokens.json"
    old = os.umask(0)
    try:
        store = FileStore(path)
        await store.save("route:a", Token("at", 1.0))
        async with store.lock("route:a"):
            pass
    finally:
        os.umask(old)
    assert mode(path) == 0o600
    assert mode(path.parent) == 0o700 and mode(path.parent.parent) == 0o700
    assert {mode(p) for p in path.parent.iterdir()} == {0o600}  # the lock files too
    assert not [p for p in path.parent.iterdir() if p.name.endswith(".tmp")]


async def test_a_file_readable_by_others_is_tightened(tmp_path: Path) -> None:
    path = tmp_path / "tokens.json"
    await FileStore(path).save("route:a", Token("at", 1.0))
    path.chmod(0o644)
    FileStore(path).verify()
    assert mode(path) == 0o600


def test_default_path_follows_xdg_state_home(tmp_path: Path, monkeypatch) -> None:
    assert default_path({"XDG_STATE_HOME": "/x/state"}) == Path("/x/state/authproxy/tokens.json")
    assert default_path({"XDG_STATE_HOME": "relative"}) == Path.home() / ".local/state/authproxy/tokens.json"
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg"))
    store = build_store(config("{}"))
    assert isinstance(store, FileStore) and store.path == tmp_path / "xdg" / "authproxy" / "tokens.json"


def test_build_store_defaults_and_choices(tmp_path: Path) -> None:
    assert isinstance(build_store(config("{}", "client_credentials")), MemoryStore)
    assert isinstance(build_store(config("{kind: memory}")), MemoryStore)
    explicit = build_store(config(f"{{kind: file, path: '{tmp_path}/t.json'}}", "client_credentials"))
    assert isinstance(explicit, FileStore) and explicit.path == tmp_path / "t.json"
    with pytest.raises(ConfigError) as err:
        build_store(config("{kind: redis}"))
    assert err.value.problems[0][0] == "store.kind"


def test_encryption_key_may_come_from_a_file_and_is_masked(tmp_path: Path) -> None:
    key_file = tmp_path / "key"
    key_file.write_text(Fernet.generate_key().decode() + "\n")
    cfg = config(f"{{path: '{tmp_path}/t.json', encryption_key_file: '{key_file}'}}")
    assert masked(cfg)["store"]["encryption_key"] == "********"  # type: ignore[index]
    assert "encrypted=True" in repr(build_store(cfg))  # type: ignore[arg-type]
    with pytest.raises(ConfigError) as err:
        build_store(config(f"{{path: '{tmp_path}/t.json', encryption_key: not-a-key}}"))
    path, message = err.value.problems[0]
    assert path == "store.encryption_key" and "Fernet.generate_key" in message and "not-a-key" not in message


async def test_writers_in_four_processes_lose_nothing_and_readers_never_see_half_a_file(tmp_path: Path) -> None:
    path = tmp_path / "tokens.json"
    writer = textwrap.dedent(
        """
        import asyncio, sys
        from authproxy.stores.file import FileStore
        from authproxy.credentials.tokens import Token

        async def main(path, name):
            store = FileStore(path)
            for i in range(25):
                await store.save(f"{name}:{i}", Token(f"{name}-{i}", 1.0, refresh_token="r" * 2000))
                await store.save("shared", Token(f"{name}-{i}", 2.0))

        asyncio.run(main(sys.argv[1], sys.argv[2]))
        """
    )
    procs = [
        await asyncio.create_subprocess_exec(sys.executable, "-c", writer, str(path), f"w{n}", cwd=ROOT)
        for n in range(4)
    ]
    waits = [asyncio.ensure_future(p.wait()) for p in procs]
    reader, reads = FileStore(path), 0
    async with asyncio.timeout(30):
        while not all(w.done() for w in waits):
            await reader.load("shared")  # raises StoreFileError if it ever saw a torn file
            reads += 1
            await asyncio.sleep(0)
    assert [w.result() for w in waits] == [0, 0, 0, 0]
    assert reads > 0
    keys = reader.keys()
    assert len(keys) == 4 * 25 + 1
    assert (await reader.load("w3:24")).refresh_token == "r" * 2000  # type: ignore[union-attr]
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


async def test_two_handles_in_one_process_lose_nothing(tmp_path: Path) -> None:
    a, b = FileStore(tmp_path / "t.json"), FileStore(tmp_path / "t.json")
    await asyncio.gather(*(s.save(f"{n}:{i}", Token("x", 1.0)) for i in range(50) for n, s in (("a", a), ("b", b))))
    assert len(a.keys()) == 100


async def test_lock_is_held_against_another_process(tmp_path: Path) -> None:
    path = tmp_path / "tokens.json"
    holder = textwrap.dedent(
        """
        import asyncio, sys
        from authproxy.stores.file import FileStore

        async def main(path):
            async with FileStore(path).lock("route:a"):
                print("locked", flush=True)
                await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)

        asyncio.run(main(sys.argv[1]))
        """
    )
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", holder, str(path), cwd=ROOT, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE
    )
    assert proc.stdin is not None and proc.stdout is not None
    async with asyncio.timeout(20):
        assert await proc.stdout.readline() == b"locked\n"
        entered = asyncio.Event()

        async def take() -> None:
            async with FileStore(path).lock("route:a"):
                entered.set()

        task = asyncio.ensure_future(take())
        async with FileStore(path).lock("route:b"):  # another key is free meanwhile
            pass
        await settle()
        assert not entered.is_set()
        proc.stdin.write(b"go\n")
        await proc.stdin.drain()
        await task
        assert await proc.wait() == 0


@contextlib.asynccontextmanager
async def held(path: Path) -> AsyncIterator[None]:
    """Another handle holds the lock on "k" while the block runs."""
    release = asyncio.Event()

    async def hold() -> None:
        async with FileStore(path).lock("k"):
            await release.wait()

    holder = asyncio.ensure_future(hold())
    await settle()
    try:
        yield
    finally:
        release.set()
        await holder


async def test_a_cancelled_wait_does_not_leak_the_lock(tmp_path: Path) -> None:
    path = tmp_path / "tokens.json"
    async with held(path):
        waiter = asyncio.ensure_future(FileStore(path).lock("k").__aenter__())
        await settle()
        waiter.cancel()
    async with asyncio.timeout(5), FileStore(path).lock("k"):  # the cancelled waiter's fd was closed
        pass


async def test_waiting_for_a_stuck_holder_is_bounded(tmp_path: Path) -> None:
    """A holder that never lets go (a stopped process) costs a clear OSError, not a hang."""
    path = tmp_path / "tokens.json"
    async with held(path):
        with pytest.raises(StoreLockTimeout) as err:
            async with asyncio.timeout(5), FileStore(path, lock_timeout=0.2).lock("k"):
                pass
    assert isinstance(err.value, OSError) and "stayed locked" in str(err.value)
    async with asyncio.timeout(5), FileStore(path, lock_timeout=0.2).lock("k"):  # the timed-out fd was closed
        pass


@pytest.mark.parametrize(
    "content",
    [b"{not json", b'{"format": "other"}', b'{"format": "authproxy-tokens", "version": 1, "tokens": {"k": 3}}'],
)
async def test_a_corrupt_file_is_a_clear_error_and_is_kept(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "tokens.json"
    path.write_bytes(content)
    store = FileStore(path)
    with pytest.raises(StoreFileError) as err:
        await store.load("k")
    assert isinstance(err.value, OSError)  # credentials treat it as a store failure, not a crash
    assert "left untouched" in str(err.value) and "mv " in str(err.value)
    with pytest.raises(StoreFileError):
        await store.save("route:a", Token("at", 1.0))
    with pytest.raises(StoreFileError):
        await store.delete("k")
    with pytest.raises(ConfigError) as cfg_err:
        build_store(config(f"{{path: '{path}'}}"))
    assert cfg_err.value.problems[0][0] == "store.path"
    assert path.read_bytes() == content


async def test_an_empty_file_is_an_empty_store(tmp_path: Path) -> None:
    path = tmp_path / "tokens.json"
    path.write_bytes(b"")
    assert await FileStore(path).load("k") is None
    await FileStore(path).save("k", Token("at", 1.0))
    assert await FileStore(path).load("k") == Token("at", 1.0)


async def test_encrypted_at_rest_and_a_wrong_key_keeps_the_file(tmp_path: Path) -> None:
    path, key, other = tmp_path / "tokens.json", Fernet.generate_key().decode(), Fernet.generate_key().decode()
    await FileStore(path, encryption_key=key).save("route:a", Token("SENTINEL-at", 1.0, refresh_token="SENTINEL-rt"))
    content = path.read_bytes()
    assert b"SENTINEL" not in content
    assert await FileStore(path, encryption_key=key).load("route:a") == Token(
        "SENTINEL-at", 1.0, refresh_token="SENTINEL-rt"
    )
    for store, field, words in [
        (FileStore(path, encryption_key=other), "encryption_key", "wrong key"),
        (FileStore(path), "encryption_key", "is encrypted"),
    ]:
        with pytest.raises(StoreFileError) as err:
            await store.load("route:a")
        assert err.value.field == field and words in str(err.value) and other not in str(err.value)
        with pytest.raises(StoreFileError):
            await store.save("route:b", Token("at", 1.0))
    with pytest.raises(ConfigError) as cfg_err:
        build_store(config(f"{{path: '{path}', encryption_key: '{other}'}}"))
    assert cfg_err.value.problems[0][0] == "store.encryption_key"
    assert path.read_bytes() == content


async def test_a_plain_file_is_encrypted_on_the_next_write_once_a_key_is_set(tmp_path: Path) -> None:
    path, key = tmp_path / "tokens.json", Fernet.generate_key().decode()
    await FileStore(path).save("route:a", Token("SENTINEL-at", 1.0))
    store = FileStore(path, encryption_key=key)
    assert (await store.load("route:a")).access_token == "SENTINEL-at"  # type: ignore[union-attr]
    await store.save("route:b", Token("b", 1.0))
    assert b"SENTINEL" not in path.read_bytes()
    assert store.keys() == ["route:a", "route:b"]
