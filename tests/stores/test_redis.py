"""RedisStore specifics against a real redis-server (the shared contract is in test_contract.py):
the lock's owner and expiry, an outage with and without fallback, write-back (plain and encrypted),
encryption at rest (wrong key, no key, a plain entry, a copied entry), and `build_store`."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import redis
from cryptography.fernet import Fernet

from authproxy.credentials.tokens import Token
from authproxy.errors import ConfigError
from authproxy.stores.build import build_store
from authproxy.stores.file import FileStore
from authproxy.stores.redis import RECONNECT_CAP, RedisStore, StoreUnavailable
from authproxy.stores.redis_format import REPLACE_IF, UnreadableEntry
from tests.conftest import LogCapture, wait_until
from tests.fakes.clock import FakeClock
from tests.fakes.redis_server import RedisServer, free_port, needs_redis, running_redis
from tests.stores.test_file import config

pytestmark = needs_redis
PASSWORD = "SENTINEL-REDIS-PW"
KEY, OTHER_KEY = Fernet.generate_key().decode(), Fernet.generate_key().decode()


@pytest.fixture
def server(tmp_path: Path) -> Iterator[RedisServer]:
    with running_redis(tmp_path / "redis", password=PASSWORD) as running:
        yield running


@pytest.fixture
async def handles() -> AsyncIterator[list[RedisStore]]:
    """Stores a test opens; closed after it."""
    opened: list[RedisStore] = []
    yield opened
    for store in opened:
        await store.close()


def open_store(handles: list[RedisStore], url: str, **kwargs: object) -> RedisStore:
    kwargs.setdefault("key_prefix", f"t{uuid.uuid4().hex[:8]}:")
    handles.append(RedisStore(url, **kwargs))  # type: ignore[arg-type]
    return handles[-1]


def raw(server: RedisServer) -> redis.Redis:
    return redis.Redis.from_url(server.url)


async def test_a_dead_holders_lock_is_taken_after_it_expires_and_only_the_owner_releases(
    server: RedisServer, handles: list[RedisStore]
) -> None:
    store = open_store(handles, server.url, key_prefix="p:")
    with raw(server) as client:
        client.set("p:lock:route:a", "a-dead-process", px=300)  # what a killed holder leaves behind
        async with store.lock("route:a"):
            owner = client.get("p:lock:route:a")
            assert owner not in (None, b"a-dead-process")
            client.set("p:lock:route:a", "someone-else", px=5000)  # ours expired and was taken meanwhile
        assert client.get("p:lock:route:a") == b"someone-else"  # not released by a non-owner
        client.delete("p:lock:route:a")
        async with store.lock("route:a"):
            pass
        assert client.get("p:lock:route:a") is None  # released by its owner


async def test_the_holder_keeps_extending_its_lock(server: RedisServer, handles: list[RedisStore]) -> None:
    clock = FakeClock()
    store = open_store(handles, server.url, key_prefix="k:", lock_ttl=60, clock=clock)
    with raw(server) as client:
        async with store.lock("route:a"):
            client.pexpire("k:lock:route:a", 5000)
            await wait_until(lambda: clock.sleepers == 1)  # the keeper is waiting
            await clock.advance(20)  # a third of lock_ttl: the keeper extends it to 60 s again
            await wait_until(lambda: client.pttl("k:lock:route:a") > 50_000)


@pytest.mark.parametrize("key", [None, KEY], ids=["plain", "encrypted"])
async def test_an_outage_falls_back_to_local_copies_and_writes_back_unless_redis_has_newer(
    server: RedisServer, handles: list[RedisStore], logs: LogCapture, key: str | None
) -> None:
    from authproxy.observability.logging import configure_logging

    configure_logging("info", "json", stream=logs.stream)
    clock = FakeClock()
    store = open_store(handles, server.url, key_prefix="o:", fallback=True, clock=clock, encryption_key=key)
    strict = open_store(handles, server.url, key_prefix="o:", encryption_key=key)
    await store.save("route:a", Token("a-1", 2e9, refresh_token="r-1", obtained_at=100.0))
    await store.save("route:b", Token("b-1", 2e9, obtained_at=100.0))
    assert store.status()["state"] == "ok"

    server.kill()
    assert await store.load("route:a") == Token("a-1", 2e9, refresh_token="r-1", obtained_at=100.0)
    assert store.status()["state"] == "unavailable"
    await store.save("route:a", Token("a-2", 2e9, refresh_token="r-2", obtained_at=200.0))  # kept locally
    await store.save("route:b", Token("b-2", 2e9, obtained_at=200.0))
    async with store.lock("route:a"):  # the in-process lock only, with a warning
        pass
    with pytest.raises(StoreUnavailable):
        await store.delete("route:a")  # a logout must not seem to succeed
    with pytest.raises(OSError) as failed:
        await strict.load("route:a")  # CLI commands: every failure is an error
    assert PASSWORD not in str(failed.value) and f"127.0.0.1:{server.port}" in str(failed.value)
    assert store.status() == {
        "kind": "redis",
        "state": "unavailable",
        "since": clock.now(),
        "error": "ConnectionError",
        "pending_writes": 2,
    }

    server.start()  # empty: nothing was persisted
    await strict.save("route:b", Token("b-3", 2e9, obtained_at=300.0))  # newer than this process's b-2
    await clock.advance(RECONNECT_CAP)  # the monitor's next reconnect attempt
    await wait_until(lambda: store.status()["state"] == "ok")
    assert store.status()["pending_writes"] == 0
    assert (await strict.load("route:a")).access_token == "a-2"  # type: ignore[union-attr]
    assert (await strict.load("route:b")).access_token == "b-3"  # type: ignore[union-attr]
    with raw(server) as client:
        stored = client.get("o:token:route:a")
    assert (b"a-2" not in stored) if key else (b"a-2" in stored)  # the write-back encrypts as a save does
    events = [e["event"] for e in logs.events]
    assert "token_store_unavailable" in events and "token_store_reconnected" in events
    assert PASSWORD not in logs.text and "a-2" not in logs.text and "r-2" not in logs.text


async def test_status_and_repr_never_show_the_url(handles: list[RedisStore]) -> None:
    store = open_store(handles, f"redis://user:{PASSWORD}@127.0.0.1:{free_port()}/3", fallback=True)
    assert repr(store).startswith("RedisStore('127.0.0.1:") and PASSWORD not in repr(store)
    assert await store.load("route:a") is None  # unreachable: nothing known locally
    assert PASSWORD not in str(store.status())


def problems(store: str, **kwargs: object) -> list[tuple[str, str]]:
    with pytest.raises(ConfigError) as err:
        build_store(config(store), **kwargs)  # type: ignore[arg-type]
    return err.value.problems


def test_build_store_for_redis_and_for_several_processes(tmp_path: Path) -> None:
    store = build_store(config("{kind: redis, url: 'redis://127.0.0.1:1/0', key_prefix: 'x:', lock_ttl: 3}"))
    assert isinstance(store, RedisStore) and store.prefix == "x:" and store.lock_ttl == 3
    assert [p for p, _ in problems("{kind: redis}")] == ["store.kind"]
    [(path, message)] = problems(f"{{kind: redis, url: 'http://u:{PASSWORD}@h/0'}}")
    assert path == "store.url" and "redis://" in message and PASSWORD not in message
    assert [p for p, _ in problems(f"{{kind: redis, url: 'redis://h', path: '{tmp_path}/t'}}")] == ["store.path"]
    assert [p for p, _ in problems("{kind: redis, url: 'redis://h', lock_ttl: 0}")] == ["store.lock_ttl"]
    shared = build_store(config(f"{{path: '{tmp_path}/t.json'}}", "client_credentials"), processes=2)
    assert isinstance(shared, FileStore)  # auto: workers share one token instead of fetching one each
    [(path, message)] = problems("{kind: memory}", processes=2)
    assert path == "store.kind" and "rotating" in message


# -- encryption at rest ----------------------------------------------------------------------------


async def test_an_encrypted_entry_hides_the_token_and_keeps_only_obtained_at_readable(
    server: RedisServer, handles: list[RedisStore]
) -> None:
    store = open_store(handles, server.url, key_prefix="e:", encryption_key=KEY)
    token = Token("SENTINEL-at", 2e9, refresh_token="SENTINEL-rt", obtained_at=123.5, identity="v1:x", scope="s")
    await store.save("route:a", token)
    with raw(server) as client:
        stored = client.get("e:token:route:a")
    assert b"SENTINEL" not in stored and b"v1:x" not in stored
    assert set(json.loads(stored)) == {"obtained_at", "encrypted"} and json.loads(stored)["obtained_at"] == 123.5
    assert await open_store(handles, server.url, key_prefix="e:", encryption_key=f" {KEY}\n").load("route:a") == token
    assert "encrypted=True" in repr(store) and KEY not in repr(store)


async def test_a_wrong_key_or_no_key_is_a_clear_error_and_the_entry_is_kept(
    server: RedisServer, handles: list[RedisStore], logs: LogCapture
) -> None:
    from authproxy.observability.logging import configure_logging

    configure_logging("info", "json", stream=logs.stream)
    await open_store(handles, server.url, key_prefix="w:", encryption_key=KEY).save("route:a", Token("at", 2e9))
    with raw(server) as client:
        before = client.get("w:token:route:a")
    for key, words in [(OTHER_KEY, "wrong key"), (None, "is encrypted; set store.encryption_key")]:
        for fallback in (False, True):  # the CLI and a serving proxy alike: an OSError, never a crash
            store = open_store(handles, server.url, key_prefix="w:", encryption_key=key, fallback=fallback)
            for _ in range(2):
                with pytest.raises(UnreadableEntry) as err:
                    await store.load("route:a")
                assert isinstance(err.value, OSError) and words in str(err.value)
                assert "redis-cli DEL w:token:route:a" in str(err.value)
                assert KEY not in str(err.value) and OTHER_KEY not in str(err.value)
    unreadable = [e for e in logs.events if e["event"] == "token_store_entry_unreadable"]
    assert len(unreadable) == 4  # once per store and key, with the advice the credential's own log leaves out
    assert "wrong key" in unreadable[0]["detail"] and KEY not in logs.text and OTHER_KEY not in logs.text
    with raw(server) as client:
        assert client.get("w:token:route:a") == before


async def test_a_plain_entry_is_read_and_encrypted_in_place(
    server: RedisServer, handles: list[RedisStore], logs: LogCapture
) -> None:
    from authproxy.observability.logging import configure_logging

    configure_logging("info", "json", stream=logs.stream)
    token = Token("SENTINEL-at", 2e9, refresh_token="SENTINEL-rt", obtained_at=10.0)
    await open_store(handles, server.url, key_prefix="m:").save("route:a", token)  # before the key was set
    store = open_store(handles, server.url, key_prefix="m:", encryption_key=KEY)
    assert await store.load("route:a") == token
    with raw(server) as client:
        stored = client.get("m:token:route:a")
    assert b"SENTINEL" not in stored and "encrypted" in json.loads(stored)
    assert await store.load("route:a") == token
    [event] = [e for e in logs.events if e["event"] == "token_store_entry_encrypted"]
    assert event["replaced"] is True and event["level"] == "warning"
    with pytest.raises(UnreadableEntry):
        await open_store(handles, server.url, key_prefix="m:").load("route:a")  # a store without the key


async def test_encrypting_in_place_never_overwrites_a_token_saved_meanwhile(
    server: RedisServer, handles: list[RedisStore]
) -> None:
    """REPLACE_IF replaces only the value that was read: a newer token another process saved stays."""
    store = open_store(handles, server.url, key_prefix="r:", encryption_key=KEY)
    with raw(server) as client:
        client.set("r:token:route:a", b'{"access_token": "newer"}')
        replace = store._script(REPLACE_IF)
        assert await replace(keys=["r:token:route:a"], args=[b'{"access_token": "older"}', b"sealed"]) == 0
        assert client.get("r:token:route:a") == b'{"access_token": "newer"}'
        assert await replace(keys=["r:token:route:a"], args=[b'{"access_token": "newer"}', b"sealed"]) == 1
        assert client.get("r:token:route:a") == b"sealed"


async def test_an_encrypted_entry_copied_to_another_key_is_refused(
    server: RedisServer, handles: list[RedisStore]
) -> None:
    store = open_store(handles, server.url, key_prefix="c:", encryption_key=KEY)
    await store.save("route:a", Token("a-token", 2e9))
    with raw(server) as client:
        client.set("c:token:route:b", client.get("c:token:route:a"))
    with pytest.raises(UnreadableEntry) as err:
        await store.load("route:b")
    assert "not encrypted for this key" in str(err.value)
    assert await store.load("route:a") == Token("a-token", 2e9)


def test_build_store_encrypts_redis_with_the_configured_key(tmp_path: Path) -> None:
    key_file = tmp_path / "key"
    key_file.write_text(KEY + "\n")
    store = build_store(config(f"{{kind: redis, url: 'redis://127.0.0.1:1/0', encryption_key_file: '{key_file}'}}"))
    assert isinstance(store, RedisStore) and "encrypted=True" in repr(store)
    assert "encrypted=False" in repr(build_store(config("{kind: redis, url: 'redis://127.0.0.1:1/0'}")))
    [(path, message)] = problems("{kind: redis, url: 'redis://h', encryption_key: not-a-key}")
    assert path == "store.encryption_key" and "Fernet.generate_key" in message and "not-a-key" not in message
    [(path, _)] = problems("{kind: redis, url: 'redis://h', allow_shared_permissions: true}")
    assert path == "store.allow_shared_permissions"
