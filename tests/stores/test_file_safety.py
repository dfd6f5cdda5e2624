"""FileStore against a hostile neighbour (issue 14, item 7): planted symlinks are never followed, and a
store directory others may write to, or a token file another user owns, is refused at startup unless
`store.allow_shared_permissions` turns the refusal into a warning."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from authproxy.credentials.tokens import Token
from authproxy.errors import ConfigError
from authproxy.stores.build import build_store
from authproxy.stores.file import FileStore, StoreFileError
from tests.cli.test_main import run_cli
from tests.conftest import LogCapture
from tests.stores.test_file import config

OTHER_UID = 65534  # nobody


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def key_lock(store: FileStore, key: str) -> Path:
    """The per-key lock file `lock(key)` opens (tokens.json.<key>-<hash>.lock)."""
    return store._lock_path(key)


@pytest.fixture
def elsewhere(tmp_path: Path) -> Path:
    """Where a planted link points: nothing may ever appear here."""
    target = tmp_path / "elsewhere"
    target.mkdir()
    return target


async def test_a_planted_write_lock_symlink_is_refused_and_nothing_is_created_at_its_target(
    tmp_path: Path, elsewhere: Path
) -> None:
    path = tmp_path / "state" / "tokens.json"
    path.parent.mkdir()
    (path.parent / "tokens.json.lock").symlink_to(elsewhere / "created-by-authproxy")
    store = FileStore(path)
    for operation in (store.save("route:a", Token("at", 1.0)), store.delete("route:a")):
        with pytest.raises(StoreFileError) as err:
            await operation
        message = str(err.value)
        assert "tokens.json.lock" in message and "symbolic link" in message and "rm " in message
    assert list(elsewhere.iterdir()) == [] and not path.exists()
    with pytest.raises(ConfigError) as cfg_err:
        build_store(config(f"{{path: '{path}'}}"))  # refused at startup too: `check` and `run` say so
    assert cfg_err.value.problems[0][0] == "store.path" and "symbolic link" in cfg_err.value.problems[0][1]


async def test_a_planted_per_key_lock_symlink_is_refused_and_nothing_is_created_at_its_target(
    tmp_path: Path, elsewhere: Path
) -> None:
    path = tmp_path / "state" / "tokens.json"
    store = FileStore(path)
    await store.save("route:b", Token("b", 1.0))
    lock = key_lock(store, "route:a")
    lock.symlink_to(elsewhere / "created-by-authproxy")
    with pytest.raises(StoreFileError) as err:
        async with store.lock("route:a"):
            pytest.fail("the lock was taken through a symlink")
    assert lock.name in str(err.value) and "symbolic link" in str(err.value)
    assert list(elsewhere.iterdir()) == []
    async with store.lock("route:b"):  # other keys are unaffected
        await store.save("route:b", Token("b2", 1.0))
    with pytest.raises(ConfigError) as cfg_err:
        build_store(config(f"{{path: '{path}'}}"))
    assert cfg_err.value.problems[0][0] == "store.path" and lock.name in cfg_err.value.problems[0][1]


async def test_a_lock_symlink_to_an_existing_file_leaves_that_file_alone(tmp_path: Path, elsewhere: Path) -> None:
    victim = elsewhere / "victim"
    victim.write_bytes(b"precious")
    victim.chmod(0o644)
    path = tmp_path / "tokens.json"
    (tmp_path / "tokens.json.lock").symlink_to(victim)
    with pytest.raises(StoreFileError):
        await FileStore(path).save("route:a", Token("at", 1.0))
    assert victim.read_bytes() == b"precious" and mode(victim) == 0o644


async def test_a_symlinked_token_file_is_refused_and_its_target_left_alone(tmp_path: Path, elsewhere: Path) -> None:
    real = elsewhere / "tokens.json"
    await FileStore(real).save("route:a", Token("at", 1.0))
    real.chmod(0o644)  # verify() would tighten a file of its own; never one behind a link
    content = real.read_bytes()
    path = tmp_path / "tokens.json"
    path.symlink_to(real)
    with pytest.raises(StoreFileError) as err:
        await FileStore(path).load("route:a")
    assert "symbolic link" in str(err.value) and "store.path" in str(err.value)
    with pytest.raises(ConfigError):
        build_store(config(f"{{path: '{path}'}}"))
    assert real.read_bytes() == content and mode(real) == 0o644 and path.is_symlink()


# -- permissions -----------------------------------------------------------------------------------


@pytest.mark.parametrize("dir_mode", [0o770, 0o757, 0o1777])
def test_a_store_directory_others_may_write_is_refused_at_startup(tmp_path: Path, dir_mode: int) -> None:
    directory = tmp_path / "shared"
    directory.mkdir()
    directory.chmod(dir_mode)
    with pytest.raises(ConfigError) as err:
        build_store(config(f"{{path: '{directory}/tokens.json'}}"))
    [(key, message)] = err.value.problems
    assert key == "store.path"
    assert f"chmod 700 {directory}" in message and "allow_shared_permissions" in message
    assert mode(directory) == dir_mode and list(directory.iterdir()) == []  # nothing changed, nothing created


async def test_a_token_file_owned_by_another_user_is_refused_at_startup(tmp_path: Path) -> None:
    path = tmp_path / "tokens.json"
    await FileStore(path).save("route:a", Token("at", 1.0))
    os.chown(path, OTHER_UID, OTHER_UID)
    with pytest.raises(ConfigError) as err:
        build_store(config(f"{{path: '{path}'}}"))
    [(key, message)] = err.value.problems
    assert key == "store.path" and f"uid {OTHER_UID}" in message and "chown" in message
    assert "allow_shared_permissions" in message
    assert path.stat().st_uid == OTHER_UID


async def test_allow_shared_permissions_turns_both_refusals_into_warnings(tmp_path: Path, logs: LogCapture) -> None:
    from authproxy.observability.logging import configure_logging

    configure_logging("info", "json", stream=logs.stream)
    directory = tmp_path / "shared"
    directory.mkdir()
    directory.chmod(0o770)
    path = directory / "tokens.json"
    await FileStore(path).save("route:a", Token("SENTINEL-at", 1.0))
    os.chown(path, OTHER_UID, OTHER_UID)
    store = build_store(config(f"{{path: '{path}', allow_shared_permissions: true}}"))
    assert isinstance(store, FileStore)
    assert (await store.load("route:a")) == Token("SENTINEL-at", 1.0)
    await store.save("route:b", Token("b", 1.0))  # the store works
    assert store.keys() == ["route:a", "route:b"]
    warnings = [e for e in logs.events if e["event"] == "token_store_permissions"]
    assert len(warnings) == 2 and {w["level"] for w in warnings} == {"warning"}
    assert "chmod 700" in logs.text and f"uid {OTHER_UID}" in logs.text and "SENTINEL" not in logs.text
    assert mode(directory) == 0o770  # an explicit store.path directory is the user's: warned about, not changed


def test_the_default_directory_is_still_tightened_not_refused(tmp_path: Path, monkeypatch) -> None:
    state = tmp_path / "xdg"
    (state / "authproxy").mkdir(parents=True)
    (state / "authproxy").chmod(0o775)
    monkeypatch.setenv("XDG_STATE_HOME", str(state))
    assert isinstance(build_store(config("{}")), FileStore)
    assert mode(state / "authproxy") == 0o700


@pytest.mark.parametrize("problem", ["shared-dir", "foreign-file", "lock-symlink"])
async def test_check_and_run_both_refuse_and_the_opt_in_lets_check_pass(tmp_path: Path, problem: str) -> None:
    directory = tmp_path / "store"
    directory.mkdir()
    path = directory / "tokens.json"
    await FileStore(path).save("route:a", Token("at", 1.0))
    if problem == "shared-dir":
        directory.chmod(0o777)
    elif problem == "foreign-file":
        os.chown(path, OTHER_UID, OTHER_UID)
    else:
        (directory / "tokens.json.lock").unlink(missing_ok=True)
        (directory / "tokens.json.lock").symlink_to(tmp_path / "target")
    routes = "routes:\n  api: {upstream: 'http://127.0.0.1:9', auth: {grant: static, token: t}}\n"
    refused = tmp_path / "refused.yaml"
    refused.write_text(f"store: {{kind: file, path: '{path}'}}\n{routes}")
    for args in (("check", "-c", str(refused)), ("run", "-c", str(refused), "--listen", "127.0.0.1:0")):
        code, out, err = await run_cli(*args)
        assert code == 2, (args, out, err)
        assert "store.path" in err and "Traceback" not in err, err
    if problem != "lock-symlink":  # the opt-in covers permissions only: a symlink is always refused
        allowed = tmp_path / "allowed.yaml"
        allowed.write_text(f"store: {{kind: file, path: '{path}', allow_shared_permissions: true}}\n{routes}")
        code, out, err = await run_cli("check", "-c", str(allowed))
        assert code == 0, err
        assert "token_store_permissions" in out + err
    assert not (tmp_path / "target").exists()
