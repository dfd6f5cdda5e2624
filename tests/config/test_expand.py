"""`$VAR` expansion as Compose does it: what a new user writes is what the provider receives."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from authproxy.config.load import parse_config
from authproxy.errors import ConfigError
from tests.cli.test_main import run_cli, write
from tests.fakes.token_server import TokenServer

ROUTE = "routes:\n  api:\n    upstream: https://api.example.com\n    headers:\n      x-v: {value}\n"
ENV = {"SET": "v", "EMPTY": ""}


def header(value: str, env: dict[str, str] | None = None) -> str:
    return parse_config(ROUTE.format(value=value), env=ENV if env is None else env).routes["api"].headers["x-v"]


def problems(value: str) -> list[tuple[str, str]]:
    with pytest.raises(ConfigError) as caught:
        parse_config(ROUTE.format(value=value), env=ENV)
    return caught.value.problems


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("'$SET'", "v"),
        ("'a-$SET/b'", "a-v/b"),
        ("'${SET}'", "v"),
        ("'${UNSET:-d}'", "d"),
        ("'${EMPTY:-d}'", "d"),
        ("'${UNSET-d}'", "d"),
        ("'x${EMPTY-d}x'", "xx"),
        ("'${SET:?needed}'", "v"),
        ("'${SET:+alt}'", "alt"),
        ("'${EMPTY:+alt}x'", "x"),
        ("'${EMPTY+alt}'", "alt"),
        ("'${UNSET+alt}x'", "x"),
        ("'${UNSET:-${SET}}'", "v"),
        ("'$$SET'", "$SET"),
        ("'$${SET}'", "${SET}"),
        ("'$$'", "$"),
        ("'${UNSET:-a}}'", "a}"),
    ],
)
def test_compose_forms(value: str, expected: str) -> None:
    assert header(value) == expected


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        ("'${SET'", "'${SET' has no closing }: write ${NAME} (quoted in YAML: '${NAME}'); a literal $ is written $$"),
        ("'a${UNSET:-${SET}'", "has no closing }"),
        ("'$UNSET'", "environment variable UNSET is not set"),
        ("'${UNSET:?set it to the API key}'", "environment variable UNSET: set it to the API key (export UNSET)"),
        ("'${EMPTY:?}'", "environment variable EMPTY: required (export EMPTY)"),
        ("'${UNSET?}'", "environment variable UNSET: required"),
        ("'pa$'", "a $ that starts no variable reference; a literal $ is written $$"),
        ("'5$ off'", "a literal $ is written $$"),
        ("'${1BAD}'", "${1BAD} is not a variable reference"),
        ("'${}'", "${} is not a variable reference"),
    ],
)
def test_bad_references_name_the_key_and_the_fix(value: str, fragment: str) -> None:
    ((path, message),) = problems(value)
    assert path == "routes.api.headers.x-v"
    assert fragment in message
    assert "$$" in message or "?" in value  # `${X:?why}` was written on purpose: its own message is the hint


def test_env_sources_record_which_variables_fed_each_key() -> None:
    text = (
        "listen: '127.0.0.1:${PORT:-8080}'\nroutes:\n  api:\n    upstream: https://$HOST\n"
        "    auth: {grant: client_credentials, token_url: /t, client_id: '${ID}', client_secret: '${S:-${S2:-x}}'}\n"
    )
    config = parse_config(text, env={"HOST": "h.example", "ID": "i"})
    assert config.env_sources == {
        "listen": ("PORT",),
        "routes.api.upstream": ("HOST",),
        "routes.api.auth.client_id": ("ID",),
        "routes.api.auth.client_secret": ("S", "S2"),
    }
    assert config.load_warnings == ()


def test_a_value_that_still_looks_like_a_variable_is_warned_about(tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    secret.write_text("${CLIENT_SECRET}\n")
    text = (
        "routes:\n  api:\n    upstream: https://api.example.com\n    auth:\n      grant: client_credentials\n"
        f"      token_url: /t\n      client_id: $ID\n      client_secret_file: {secret}\n"
        "    headers: {x-price: '$$5', x-literal: '$${NOT_A_VAR}'}\n"
    )
    config = parse_config(text, env={"ID": "$MY_CLIENT_ID"})
    assert config.load_warnings == (
        "routes.api.auth.client_id: the value of ID looks like an unexpanded variable ($MY_CLIENT_ID); "
        "variables are expanded once: set ID to the value itself",
        f"routes.api.auth.client_secret_file: the content of {secret} looks like an unexpanded variable "
        "(${CLIENT_SECRET}); file contents are used as they are: put the value itself in the file",
    )


async def test_the_token_endpoint_receives_the_expanded_client_id(tmp_path: Path, token_server: TokenServer) -> None:
    """The first-ten-minutes case: `$VAR` and `${VAR}` reach the provider expanded, not literally."""
    config = write(
        tmp_path,
        "routes:\n  api:\n    upstream: https://api.example.com\n    auth:\n      grant: client_credentials\n"
        f"      token_url: {token_server.url}\n"
        '      client_id: "$MY_CLIENT_ID"\n      client_secret: "${MY_CLIENT_SECRET}"\n',
    )
    env = {**os.environ, "MY_CLIENT_ID": "the-id", "MY_CLIENT_SECRET": "SENTINEL-SECRET"}
    code, out, err = await run_cli("token", "api", "-c", config, env=env)
    assert (code, out) == (0, "at-1\n"), err
    assert [r.basic_auth() for r in token_server.requests] == [("the-id", "SENTINEL-SECRET")]


async def test_check_refuses_an_unterminated_reference_naming_the_key(tmp_path: Path) -> None:
    config = write(
        tmp_path,
        "routes:\n  api:\n    upstream: https://api.example.com\n    auth:\n      grant: client_credentials\n"
        '      token_url: /t\n      client_id: "$MY_CLIENT_ID"\n      client_secret: "${MY_CLIENT_SECRET"\n',
    )
    env = {**os.environ, "MY_CLIENT_ID": "the-id", "MY_CLIENT_SECRET": "SENTINEL-SECRET"}
    code, out, err = await run_cli("check", "-c", config, env=env)
    assert (code, out) == (2, "")
    assert (
        "routes.api.auth.client_secret: '${MY_CLIENT_SECRET' has no closing }: write ${NAME} "
        "(quoted in YAML: '${NAME}'); a literal $ is written $$"
    ) in err
    assert "SENTINEL" not in err and "Traceback" not in err


async def test_check_warns_about_a_variable_holding_a_reference(tmp_path: Path) -> None:
    config = write(
        tmp_path,
        "routes:\n  api:\n    upstream: https://api.example.com\n    auth:\n      grant: client_credentials\n"
        '      token_url: /t\n      client_id: "${MY_CLIENT_ID}"\n      client_secret: s\n',
    )
    code, _, err = await run_cli("check", "-c", config, env={**os.environ, "MY_CLIENT_ID": "${STOCKX_ID}"})
    assert code == 0
    assert (
        "warning: routes.api.auth.client_id: the value of MY_CLIENT_ID looks like an unexpanded variable "
        "(${STOCKX_ID}); variables are expanded once: set MY_CLIENT_ID to the value itself\n"
    ) in err
