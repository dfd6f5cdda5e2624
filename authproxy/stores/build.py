"""`build_store(config)`: the store `store:` asks for, checked now rather than on first use."""

from __future__ import annotations

from authproxy.config.schema import Config
from authproxy.errors import ConfigError
from authproxy.stores.base import TokenStore

# Grants whose refresh token must survive a restart (a rotated one exists nowhere else).
PERSISTENT_GRANTS = frozenset({"authorization_code", "refresh_token"})


def needs_persistence(config: Config) -> bool:
    """True when some route keeps a refresh token: `store.kind: auto` then means a file."""
    return any(route.auth.grant in PERSISTENT_GRANTS for route in config.routes.values())


def build_store(config: Config, *, serving: bool = False, processes: int = 1) -> TokenStore:
    """The store `config.store` asks for; `auto` is a file when tokens must persist or be shared.

    `serving`: for a long-running proxy (a Redis outage then falls back to this process's copies
    instead of failing); `processes`: how many worker processes will share the store (`auto` then
    picks a file, and memory is refused for refresh-token grants: each process would use the same
    rotating refresh token). A file that exists but cannot be read (corrupt, wrong key) is a
    ConfigError naming what to fix, raised now rather than on the first request, and the file is
    left as it is.
    """
    from authproxy.stores.memory import MemoryStore

    settings = config.store
    kind = settings.kind
    if kind == "auto":
        kind = "file" if needs_persistence(config) or processes > 1 else "memory"
    if kind == "memory":
        if processes > 1 and needs_persistence(config):
            raise ConfigError(
                [
                    (
                        "store.kind",
                        f"memory with {processes} worker processes: each would use the same refresh token, and "
                        "a rotating one is revoked on reuse; use file (one machine) or redis",
                    )
                ]
            )
        return MemoryStore()
    if kind == "redis":
        return _redis_store(config, serving)
    return _file_store(config)


def _redis_store(config: Config, serving: bool) -> TokenStore:
    from authproxy.config.redis_url import parse_redis_url
    from authproxy.stores.crypto import make_cipher
    from authproxy.stores.redis import INSTALL_HINT, Redis, RedisStore

    settings = config.store
    problems = []
    if not settings.url:
        problems.append(("store.kind", "redis needs store.url (or url_file), e.g. redis://127.0.0.1:6379/0"))
    else:
        try:  # the config loader checked it already; a Config built in code is checked here
            parse_redis_url(settings.url, sentinel_master=settings.sentinel_master, cluster=settings.cluster)
        except ValueError as exc:
            problems.append(("store.url", str(exc)))
    file_only = "applies to the file store only; remove it with kind: redis"
    if settings.path is not None:
        problems.append(("store.path", file_only))
    if settings.allow_shared_permissions:
        problems.append(("store.allow_shared_permissions", file_only))
    if settings.lock_ttl <= 0:
        problems.append(("store.lock_ttl", "must be a positive number of seconds"))
    if Redis is None:
        problems.append(("store.kind", f"the redis store needs the redis package; {INSTALL_HINT}"))
    if settings.encryption_key is not None:
        try:
            make_cipher(settings.encryption_key)  # checked with the rest: every problem at once
        except ValueError as exc:
            problems.append(("store.encryption_key", str(exc)))
    if problems:
        raise ConfigError(problems)
    assert settings.url is not None
    return RedisStore(
        settings.url,
        key_prefix=settings.key_prefix,
        sentinel_master=settings.sentinel_master,
        sentinel_password=settings.sentinel_password,
        cluster=settings.cluster,
        lock_ttl=settings.lock_ttl,
        fallback=serving,
        encryption_key=settings.encryption_key,
    )


def _file_store(config: Config) -> TokenStore:
    from authproxy.stores.file import FileStore, StoreFileError, default_path

    settings = config.store
    path = settings.path or default_path()
    try:
        store = FileStore(
            path,
            encryption_key=settings.encryption_key,
            private_dir=settings.path is None,
            allow_shared_permissions=settings.allow_shared_permissions,
        )
    except ValueError as exc:
        raise ConfigError([("store.encryption_key", str(exc))]) from None
    try:
        store.verify()
    except StoreFileError as exc:
        raise ConfigError([(f"store.{exc.field}", exc.message)]) from None
    except OSError as exc:
        raise ConfigError(
            [("store.path", f"cannot read {path}: {exc.strerror or exc}; check the path and its permissions")]
        ) from None
    return store
