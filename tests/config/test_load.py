"""Config loading: expansion, file indirection, presets, and one clear message per mistake."""

from __future__ import annotations

import pytest

from authproxy.config.load import load_config, parse_config
from authproxy.config.masking import masked
from authproxy.errors import ConfigError

BASE = "routes:\n  api:\n    upstream: https://api.example.com/v1\n"


def problems(text: str, env: dict[str, str] | None = None) -> list[tuple[str, str]]:
    with pytest.raises(ConfigError) as info:
        parse_config(text, env=env or {})
    return info.value.problems


def test_minimal_route_defaults() -> None:
    config = parse_config(BASE, env={})
    route = config.routes["api"]
    assert route.prefix == "/api"
    assert route.upstream == "https://api.example.com/v1"
    assert route.auth.grant == "none"
    assert config.listen == "127.0.0.1:8080"
    assert (config.host, config.port) == ("127.0.0.1", 8080)


def test_env_expansion_with_defaults_and_escape() -> None:
    text = (
        "listen: ${HOST:-127.0.0.1}:${PORT}\n"
        "routes:\n  api:\n    upstream: https://${API_HOST}/\n"
        "    headers: {x-api-key: '${KEY}', x-price: '$$5'}\n"
    )
    config = parse_config(text, env={"PORT": "9000", "API_HOST": "api.example.com", "KEY": "k-1"})
    assert config.listen == "127.0.0.1:9000"
    assert config.routes["api"].upstream == "https://api.example.com/"
    assert config.routes["api"].headers == {"x-api-key": "k-1", "x-price": "$5"}


def test_empty_env_value_takes_default() -> None:
    config = parse_config("listen: '${L:-127.0.0.1:1234}'\n" + BASE, env={"L": ""})
    assert config.listen == "127.0.0.1:1234"


def test_missing_env_variable_names_it_and_its_path() -> None:
    found = problems(BASE + "    auth: {grant: static, token: '${API_TOKEN}'}\n")
    assert found == [
        (
            "routes.api.auth.token",
            "environment variable API_TOKEN is not set; export it, or write ${API_TOKEN:-default} to give a default"
            " (a literal $ is written $$)",
        )
    ]


def test_secret_file_indirection(tmp_path) -> None:
    secret = tmp_path / "secret"
    secret.write_text("s3cr3t-value\n")
    key = tmp_path / "key"
    key.write_text("api-key-value")
    text = (
        BASE + "    headers:\n      x-api-key_file: key\n"
        "    auth:\n      grant: client_credentials\n      token_url: /oauth/token\n"
        "      client_id: id\n      client_secret_file: " + str(secret) + "\n"
    )
    config_file = tmp_path / "config.yaml"
    config_file.write_text(text)
    route = load_config(config_file, env={}).routes["api"]
    assert route.auth.client_secret == "s3cr3t-value"
    assert route.headers == {"x-api-key": "api-key-value"}  # relative to the config file's folder
    assert route.auth.token_url == "https://api.example.com/oauth/token"


def test_unreadable_secret_file_and_non_secret_file_key(tmp_path) -> None:
    found = problems(
        BASE + f"    upstream_file: {tmp_path}/x\n    auth:\n      grant: static\n"
        f"      token_file: {tmp_path}/missing\n"
    )
    paths = dict(found)
    assert "only secrets can be read from a file" in paths["routes.api.upstream_file"]
    assert "cannot read" in paths["routes.api.auth.token_file"] and "missing" in paths["routes.api.auth.token_file"]


def test_value_and_file_both_given(tmp_path) -> None:
    (tmp_path / "t").write_text("x")
    found = problems(BASE + f"    auth:\n      grant: static\n      token: a\n      token_file: {tmp_path}/t\n")
    assert found == [("routes.api.auth.token_file", "give either `token` or `token_file`, not both")]


def test_unknown_key_suggests_the_closest() -> None:
    found = problems("routes:\n  api:\n    upstrem: https://x.example\n")
    paths = dict(found)
    assert "did you mean 'upstream'?" in paths["routes.api.upstrem"]
    assert paths["routes.api.upstream"].startswith("required")


def test_unknown_choice_suggests_the_closest() -> None:
    found = problems(BASE + "    auth: {grant: client_credential}\n")
    assert found[0][0] == "routes.api.auth.grant"
    assert "did you mean 'client_credentials'?" in found[0][1]


def test_every_error_is_reported_at_once() -> None:
    text = (
        "listen: nowhere\n"
        "lgo: {}\n"
        "routes:\n"
        "  a:\n    upstream: ftp://x\n    connect_timeout: soon\n    pass_client_auth: 'yes'\n"
        "  b:\n    upstream: https://b.example\n    prefix: /a\n    retry_body_limit: lots\n"
        "  c:\n    upstream: https://c.example\n    prefix: /-/admin\n"
    )
    found = dict(problems(text))
    assert set(found) == {
        "listen",
        "lgo",
        "routes.a.upstream",
        "routes.a.connect_timeout",
        "routes.a.pass_client_auth",
        "routes.b.prefix",
        "routes.b.retry_body_limit",
        "routes.c.prefix",
    }
    assert "did you mean 'log'?" in found["lgo"]
    assert "not an http(s) URL" in found["routes.a.upstream"]
    assert "expected a number of seconds" in found["routes.a.connect_timeout"]
    assert "expected true or false" in found["routes.a.pass_client_auth"]
    assert "already served by route a" in found["routes.b.prefix"]
    assert "1MiB" in found["routes.b.retry_body_limit"]
    assert "reserved for the admin endpoints" in found["routes.c.prefix"]
    assert "not host:port" in found["listen"]


@pytest.mark.parametrize(
    ("snippet", "path", "fragment"),
    [
        (
            "    auth: {grant: client_credentials, client_id: i, client_secret: s}\n",
            "routes.api.auth.token_url",
            "required for grant client_credentials",
        ),
        (
            "    auth: {grant: client_credentials, token_url: /t, client_secret: s}\n",
            "routes.api.auth.client_id",
            "required with client_auth client_secret_basic",
        ),
        (
            "    auth: {grant: client_credentials, token_url: /t, client_id: i}\n",
            "routes.api.auth.client_secret",
            "client_secret_file",
        ),
        (
            "    auth: {grant: client_credentials, token_url: /t, client_id: i, client_auth: private_key_jwt}\n",
            "routes.api.auth.private_key",
            "private_key_file",
        ),
        (
            "    auth: {grant: authorization_code, token_url: /t, client_id: i, client_secret: s}\n",
            "routes.api.auth.authorize_url",
            "required for grant authorization_code",
        ),
        ("    auth: {grant: static}\n", "routes.api.auth.token", "required for grant static"),
        (
            "    auth: {grant: static, token: x, token_url: 'mailto:x'}\n",
            "routes.api.auth.token_url",
            "not an http(s) URL",
        ),
        (
            "    auth: {response: {acces_token: x}}\n",
            "routes.api.auth.response.acces_token",
            "did you mean 'access_token'?",
        ),
        ("    headers: {'bad header': x}\n", "routes.api.headers.bad header", "not a valid HTTP header name"),
        ("    headers: {x-a: [1, 2]}\n", "routes.api.headers.x-a", "expected a string value"),
        ('    headers: {x-a: "a\\r\\nInjected: 1"}\n', "routes.api.headers.x-a", "line breaks"),
        ("    headers: [x]\n", "routes.api.headers", "expected a mapping of names to values"),
        ("    retry_on_401: sometimes\n", "routes.api.retry_on_401", "expected one of: always, idempotent, never"),
        ("    prefix: 'no-slash'\n", "routes.api.prefix", "is not a path prefix"),
        ("    preset: stokx\n", "routes.api.preset", "did you mean 'stockx'?"),
        ("    auth: nope\n", "routes.api.auth", "expected a mapping"),
        ("    read_timeout: -1\n", "routes.api.read_timeout", "expected a number of seconds"),
    ],
)
def test_each_config_error_names_key_and_fix(snippet: str, path: str, fragment: str) -> None:
    found = dict(problems(BASE + snippet))
    assert path in found, found
    assert fragment in found[path]


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("routes: [", "invalid YAML: line"),
        ("- a\n- b\n", "the top level must be a mapping"),
        ("listen: 127.0.0.1:8080\n", "no routes"),
        ("routes: [a]\n", "expected a mapping of route name"),
        ("routes:\n  'bad name!': {upstream: https://x.example}\n", "route names use letters"),
        ("routes:\n  api: https://x.example\n", "expected a mapping with at least `upstream:`"),
    ],
)
def test_structural_errors(text: str, fragment: str) -> None:
    assert any(fragment in message for _, message in problems(text))


def test_preset_fills_defaults_and_route_keys_win() -> None:
    text = (
        "routes:\n  stockx:\n    preset: stockx\n    headers: {x-api-key: k}\n"
        "    auth: {client_id: i, client_secret: s, scope: openid}\n"
    )
    route = parse_config(text, env={}).routes["stockx"]
    assert route.upstream == "https://api.stockx.com"
    assert route.auth.grant == "authorization_code"
    assert route.auth.audience == "gateway.stockx.com"
    assert route.auth.token_url == "https://accounts.stockx.com/oauth/token"
    assert route.auth.scope == "openid"  # the route's own key wins


def test_preset_required_header_missing() -> None:
    found = problems("routes:\n  stockx:\n    preset: stockx\n    auth: {client_id: i, client_secret: s}\n")
    assert found == [
        ("routes.stockx.headers.x-api-key", "the stockx preset needs this header; add `x-api-key: ${STOCKX_X_API_KEY}`")
    ]


@pytest.mark.parametrize("preset", ["stockx", "stex", "stonex", "tradevest", "o-token"])
def test_every_preset_loads_with_credentials(preset: str) -> None:
    text = (
        f"routes:\n  p:\n    preset: {preset}\n    upstream: https://api.example.com\n"
        "    headers: {x-api-key: k}\n    auth: {client_id: i, client_secret: s}\n"
    )
    route = parse_config(text, env={}).routes["p"]
    assert route.auth.grant in ("client_credentials", "authorization_code")
    assert route.auth.token_url and route.auth.token_url.startswith("https://")


def test_masked_hides_every_secret() -> None:
    text = (
        BASE + "    headers: {x-api-key: SENTINEL-HEADER}\n"
        "    auth:\n      grant: client_credentials\n      token_url: /t\n      client_id: visible-id\n"
        "      client_secret: SENTINEL-SECRET\n      extra_params: {p: SENTINEL-PARAM}\n"
    )
    shown = repr(masked(parse_config(text, env={})))
    assert "SENTINEL" not in shown
    assert "visible-id" in shown and "********" in shown


def test_size_units() -> None:
    config = parse_config(BASE + "    retry_body_limit: 2MiB\n", env={})
    assert config.routes["api"].retry_body_limit == 2 * 1024 * 1024


def test_root_prefix_and_trailing_slash_normalised() -> None:
    config = parse_config(
        "routes:\n  a: {upstream: 'https://a.example', prefix: /}\n  b: {upstream: 'https://b.example', prefix: /b/}\n",
        env={},
    )
    assert config.routes["a"].prefix == "/"
    assert config.routes["b"].prefix == "/b"


@pytest.mark.parametrize("listen", ["0.0.0.0:8080", "[::]:8080", "192.168.1.5:80", "example.com:80"])
def test_non_loopback_listen_needs_allow_anonymous(listen: str) -> None:
    found = dict(problems(f"listen: '{listen}'\n" + BASE))
    assert "allow_anonymous: true" in found["listen"]
    assert parse_config(f"listen: '{listen}'\nallow_anonymous: true\n" + BASE, env={}).listen == listen


@pytest.mark.parametrize("listen", ["127.0.0.1:8080", "127.0.0.2:1", "[::1]:8080", "localhost:8080"])
def test_loopback_listen_is_fine(listen: str) -> None:
    assert parse_config(f"listen: '{listen}'\n" + BASE, env={}).listen == listen


@pytest.mark.parametrize("uri", ["http://localhost:99999/callback", "localhost:8765/cb", "ftp://localhost/cb"])
def test_a_bad_redirect_uri_is_a_config_error_not_a_login_crash(uri: str) -> None:
    text = (
        "routes:\n  api:\n    upstream: http://127.0.0.1:9\n    auth: {grant: authorization_code, token_url: /t, "
        f"authorize_url: /a, client_id: c, client_secret: s, redirect_uri: '{uri}'}}\n"
    )
    with pytest.raises(ConfigError) as err:
        parse_config(text, env={})
    assert [p for p, _ in err.value.problems] == ["routes.api.auth.redirect_uri"]


def test_console_and_trace_keys_are_checked() -> None:
    text = """
trace: [api, apx]
console: {requests: -1, capture_bodies: 65}
routes:
  api: {upstream: "https://api.example.com"}
"""
    with pytest.raises(ConfigError) as err:
        parse_config(text, env={})
    rendered = err.value.render()
    assert "trace: unknown route 'apx'; did you mean 'api'? expected one of: all, api" in rendered
    assert "console.requests: expected a whole number" in rendered
    assert "console.capture_bodies: KiB of each body to keep: from 1 to 64, e.g. 16" in rendered
    config = parse_config("trace: all\nroutes:\n  api: {upstream: 'https://api.example.com'}\n", env={})
    assert config.trace == ("all",) and config.console.requests == 200 and config.console.capture_bodies is None
