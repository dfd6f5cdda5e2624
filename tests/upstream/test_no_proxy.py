"""NO_PROXY matching (as curl reads it) and the egress policy: which proxy, from which key or variable, bad input."""

from __future__ import annotations

from typing import Any

import pytest
import yaml
from yarl import URL

from authproxy.config.load import parse_config
from authproxy.config.masking import masked, secret_values
from authproxy.errors import ConfigError
from authproxy.upstream.egress import EgressPolicy
from authproxy.upstream.no_proxy import NoProxy

LIST = "example.com, .corp.net,10.0.0.0/8 ::1 [fd00::1]:443,localhost:8080,192.168.1.5,*.wild.org"


@pytest.mark.parametrize(
    "host, port, entry",
    [
        ("example.com", 443, "example.com"),
        ("api.example.com", 443, "example.com"),  # a name matches its subdomains too, as curl does
        ("EXAMPLE.com.", 80, "example.com"),  # case and a trailing dot do not matter
        ("badexample.com", 443, None),  # a suffix match is at a dot only
        ("corp.net", 80, ".corp.net"),  # a leading dot matches the name itself too (curl)
        ("a.b.corp.net", 80, ".corp.net"),
        ("x.wild.org", 80, "*.wild.org"),
        ("10.1.2.3", 80, "10.0.0.0/8"),
        ("11.1.2.3", 80, None),
        ("::1", 80, "::1"),
        ("fd00::1", 443, "[fd00::1]:443"),
        ("fd00::1", 80, None),  # host:port matches that port only
        ("localhost", 8080, "localhost:8080"),
        ("localhost", 8081, None),
        ("192.168.1.5", 1, "192.168.1.5"),
        ("192.168.1.50", 1, None),
    ],
)
def test_no_proxy_matches_as_curl_does(host: str, port: int, entry: str | None) -> None:
    no_proxy = NoProxy(LIST)
    assert no_proxy.invalid == []
    assert no_proxy.match(host, port) == entry


def test_star_sends_every_host_direct_and_an_empty_list_none() -> None:
    assert NoProxy("*").match("anything.example", 1) == "*"
    assert NoProxy("").match("anything.example", 1) is None
    assert not NoProxy(" , ")


def test_entries_that_are_not_hosts_are_set_aside() -> None:
    assert NoProxy("ok.example, http://x.example, 10.0.0.0/33, a b/c, host:99999, exa_mple.com").invalid == [
        "http://x.example",
        "10.0.0.0/33",
        "b/c",
        "host:99999",
    ]


def policy(config: dict[str, Any], environ: dict[str, str] | None = None, route: str = "api") -> EgressPolicy:
    cfg = parse_config(yaml.safe_dump(config), env={})
    return EgressPolicy(cfg, cfg.routes[route], environ or {})


def choice(config: dict[str, Any], url: str, environ: dict[str, str] | None = None) -> dict[str, str]:
    return policy(config, environ).choose(URL(url)).status()


API = {"api": {"upstream": "https://api.example.com"}}


@pytest.mark.parametrize(
    "config, environ, url, expected",
    [
        (
            {"routes": API},
            {},
            "https://api.example.com",
            ("direct", "no egress proxy configured or in the environment"),
        ),
        (
            {"routes": API},
            {"HTTPS_PROXY": "p.corp:3128"},
            "https://a.example",
            ("http://p.corp:3128", "env HTTPS_PROXY"),
        ),
        ({"routes": API}, {"https_proxy": "http://p:1"}, "https://a.example", ("http://p:1", "env https_proxy")),
        (
            {"routes": API},
            {"HTTPS_PROXY": "http://p:1"},
            "http://a.example",
            ("direct", "no egress proxy configured or in the environment"),
        ),
        ({"routes": API}, {"HTTP_PROXY": "http://p:1"}, "http://a.example", ("http://p:1", "env HTTP_PROXY")),
        (
            {"routes": API},
            {"HTTP_PROXY": "http://p:1", "no_proxy": ".example"},
            "http://a.example",
            ("direct", "env no_proxy entry '.example'"),
        ),
        (
            {"egress_proxy": {"url": "http://c:2"}, "routes": API},
            {"HTTPS_PROXY": "http://p:1"},
            "https://a.example",
            ("http://c:2", "egress_proxy.url"),
        ),
        (
            {"egress_proxy": {"from_env": False}, "routes": API},
            {"HTTPS_PROXY": "http://p:1"},
            "https://a.example",
            ("direct", "no egress proxy configured or in the environment"),
        ),
        (
            {"egress_proxy": {"url": "none"}, "routes": API},
            {"HTTPS_PROXY": "http://p:1"},
            "https://a.example",
            ("direct", "egress_proxy.url: none"),
        ),
        # a config's own no_proxy replaces the environment's
        (
            {"egress_proxy": {"url": "http://c:2", "no_proxy": ["b.example"]}, "routes": API},
            {"NO_PROXY": "a.example"},
            "https://a.example",
            ("http://c:2", "egress_proxy.url"),
        ),
        (
            {"egress_proxy": {"url": "http://c:2", "no_proxy": ["a.example"]}, "routes": API},
            {},
            "https://a.example",
            ("direct", "egress_proxy.no_proxy entry 'a.example'"),
        ),
        # the route's section wins over the top-level one
        (
            {
                "egress_proxy": {"url": "http://c:2"},
                "routes": {"api": {"upstream": "https://x", "egress_proxy": {"url": "http://r:3"}}},
            },
            {},
            "https://a.example",
            ("http://r:3", "routes.api.egress_proxy.url"),
        ),
        (
            {
                "egress_proxy": {"url": "http://c:2"},
                "routes": {"api": {"upstream": "https://x", "egress_proxy": {"url": "none"}}},
            },
            {},
            "https://a.example",
            ("direct", "routes.api.egress_proxy.url: none"),
        ),
    ],
)
def test_which_egress_and_why(config, environ, url, expected) -> None:
    assert choice(config, url, environ) == {"via": expected[0], "from": expected[1]}


def test_credentials_are_sent_as_basic_and_shown_masked() -> None:
    chosen = policy({"egress_proxy": {"url": "http://u%40corp:p%3Ass@proxy:3128"}, "routes": API}).choose(
        URL("https://a")
    )
    egress = chosen.egress
    assert egress is not None
    assert egress.authorization == "Basic dUBjb3JwOnA6c3M="  # base64("u@corp:p:ss")
    assert egress.shown == "http://u@corp:********@proxy:3128"
    assert egress.credentials_from == "the user:password in egress_proxy.url"
    assert "p:ss" not in repr(egress)
    keys = policy(
        {"egress_proxy": {"url": "http://proxy:3128", "username": "u", "password": "pw"}, "routes": API}
    ).choose(URL("https://a"))
    assert keys.egress is not None
    assert keys.egress.credentials_from == "egress_proxy.username / egress_proxy.password"


def test_the_password_is_masked_in_check_output_and_redacted_in_logs() -> None:
    cfg = parse_config(yaml.safe_dump({"egress_proxy": {"url": "http://u:hunter22@proxy:3128"}, "routes": API}), env={})
    assert masked(cfg)["egress_proxy"]["url"] == "http://u:********@proxy:3128"
    assert {"hunter22", "u:hunter22", "dTpodW50ZXIyMg=="} <= set(secret_values(cfg))


@pytest.mark.parametrize(
    "config, environ, key, message",
    [
        (
            {"egress_proxy": {"url": "socks5://p:1080"}},
            {},
            "egress_proxy.url",
            "scheme socks5:// is not supported; write http://host:port",
        ),
        (
            {"egress_proxy": {"url": "https://p:443"}},
            {},
            "egress_proxy.url",
            "scheme https:// is not supported; write http://host:port",
        ),
        ({}, {"HTTPS_PROXY": "socks5h://p:1080"}, "env HTTPS_PROXY", "scheme socks5h:// is not supported"),
        ({"egress_proxy": {"url": "http://p:1/path"}}, {}, "egress_proxy.url", "a proxy URL has no path or query"),
        (
            {"egress_proxy": {"url": "http://u:secretpw@p:1", "password": "x"}},
            {},
            "egress_proxy.url",
            "give the credentials in the URL or in egress_proxy.username/password, not both",
        ),
        (
            {"egress_proxy": {"url": "http://p:1", "no_proxy": ["ok.example", "http://bad.example"]}},
            {},
            "egress_proxy.no_proxy",
            "'http://bad.example' is not a host name, IP address, CIDR range, host:port or *",
        ),
    ],
)
def test_bad_egress_settings_name_the_key_and_the_fix(config, environ, key, message) -> None:
    with pytest.raises(ConfigError) as caught:
        policy({**config, "routes": API}, environ).choose(URL("https://a.example"))
    ((path, text),) = caught.value.problems
    assert path == key
    assert message in text
    assert "secretpw" not in text


def test_a_bad_no_proxy_entry_in_the_environment_is_a_warning_naming_it() -> None:
    found = policy({"routes": API}, {"NO_PROXY": "a.example,10.0.0.0/99"})
    assert found.warnings == [
        "NO_PROXY: '10.0.0.0/99' is not a host name, IP address, CIDR range, host:port or *; write e.g. "
        "example.com, .corp.example, 10.0.0.0/8, localhost:8080; those entries are ignored"
    ]
    assert found.choose(URL("https://a.example")).reason == "no egress proxy configured or in the environment"
