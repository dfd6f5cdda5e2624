"""The Redis store's URL forms and keys, checked when the config loads: every mistake names the key and
what to write, never the password."""

from __future__ import annotations

import pytest

from authproxy.config.load import parse_config
from authproxy.config.masking import secret_values
from authproxy.config.redis_url import parse_redis_url
from authproxy.errors import ConfigError

PW = "SENTINEL-P@SS"
ROUTES = "routes:\n  api: {upstream: 'http://127.0.0.1:9'}\n"


def problems(store: str) -> list[tuple[str, str]]:
    with pytest.raises(ConfigError) as err:
        parse_config(f"store: {store}\n{ROUTES}", env={})
    return err.value.problems


def test_the_three_forms_and_their_keyed_equivalents() -> None:
    sentinel = parse_redis_url("rediss+sentinel://u:pw@10.0.0.1,10.0.0.2:26380/mymaster/2?ssl_cert_reqs=none")
    assert (sentinel.mode, sentinel.service, sentinel.db, sentinel.tls) == ("sentinel", "mymaster", 2, True)
    assert sentinel.nodes == (("10.0.0.1", 26379), ("10.0.0.2", 26380))
    assert sentinel.node_url == "rediss://u:pw@10.0.0.1:26379/2?ssl_cert_reqs=none"
    assert sentinel.where() == "Redis master 'mymaster' via sentinels 10.0.0.1:26379,10.0.0.2:26380 (db 2)"
    keyed = parse_redis_url("rediss://u:pw@10.0.0.1,10.0.0.2:26380/2?ssl_cert_reqs=none", sentinel_master="mymaster")
    assert keyed == sentinel
    cluster = parse_redis_url("redis+cluster://[::1]:7000,127.0.0.1:7001")
    assert cluster.mode == "cluster" and cluster.nodes == (("::1", 7000), ("127.0.0.1", 7001))
    assert parse_redis_url("redis://[::1]:7000,127.0.0.1:7001", cluster=True) == cluster
    assert parse_redis_url("redis://h:1/3").address() == "h:1/3"
    config = parse_config(f"store: {{kind: redis, url: 'redis+sentinel://:{PW}@h:1/m/0'}}\n{ROUTES}", env={})
    assert PW in secret_values(config)  # the redactor masks the password even where the URL is cut


@pytest.mark.parametrize(
    ("store", "key", "words"),
    [
        (f"{{kind: redis, url: 'http://:{PW}@h/0'}}", "store.url", "redis+sentinel://"),
        (f"{{kind: redis, url: 'redis+sentinel://:{PW}@h:1,h:2'}}", "store.url", "names no master"),
        (f"{{kind: redis, url: 'redis://:{PW}@h:1,h:2/0'}}", "store.url", "store.sentinel_master"),
        (f"{{kind: redis, url: 'redis+cluster://:{PW}@h:1/3'}}", "store.url", "only database 0"),
        (f"{{kind: redis, url: 'redis+sentinel://:{PW}@h:99999/m'}}", "store.url", "port outside"),
        ("{kind: redis, url: 'redis+sentinel://h/m', cluster: true}", "store.url", "already says the mode"),
        ("{kind: redis, url: 'redis://h/0', sentinel_master: m, cluster: true}", "store.url", "exclude each other"),
        ("{kind: redis, url: 'redis://h/0', sentinel_password: x}", "store.sentinel_password", "Sentinel only"),
        ("{kind: file, sentinel_master: m}", "store.sentinel_master", "kind: redis only"),
        ("{kind: redis, url: 'redis+cluster://h:1', key_prefix: 'a{b}:'}", "store.key_prefix", "hash tag"),
    ],
)
def test_mistakes_name_the_key_and_the_fix_never_the_password(store: str, key: str, words: str) -> None:
    [(path, message)] = problems(store)
    assert path == key and words in message
    assert PW not in message
