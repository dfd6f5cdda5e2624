"""Misplaced keys and YAML's braces: the error says where the key belongs or how to quote it."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from authproxy.config.load import parse_config
from authproxy.errors import ConfigError
from tests.cli.test_main import run_cli, write

ROUTE = "routes:\n  x:\n    upstream: https://a.example\n"


def only_problem(text: str) -> tuple[str, str]:
    with pytest.raises(ConfigError) as caught:
        parse_config(text, env={"K": "k"})
    ((path, message),) = [p for p in caught.value.problems if p[0] != "routes"]
    return path, message


@pytest.mark.parametrize(
    ("text", "path", "message"),
    [
        (
            ROUTE + "    client_id: abc\n",
            "routes.x.client_id",
            "unknown key 'client_id' here; it belongs at routes.x.auth.client_id (indent it under `auth:`)",
        ),
        (
            ROUTE + "    client_secret_file: /run/secrets/s\n",
            "routes.x.client_secret_file",
            "unknown key 'client_secret_file' here; it belongs at routes.x.auth.client_secret_file "
            "(indent it under `auth:`)",
        ),
        (
            ROUTE + "    auth:\n      upstream: https://b.example\n",
            "routes.x.auth.upstream",
            "unknown key 'upstream' here; it belongs at routes.x.upstream",
        ),
        (
            "token_url: /t\n" + ROUTE,
            "token_url",
            "unknown key 'token_url' here; it belongs at routes.NAME.auth.token_url",
        ),
        (
            "stockx:\n  preset: stockx\n" + ROUTE,
            "stockx",
            "'stockx' looks like a route: indent it two spaces under a `routes:` line (routes: {stockx: ...})",
        ),
        (
            ROUTE + "    api:\n      upstream: https://b.example\n",
            "routes.x.api",
            "'api' looks like a route inside route 'x': indent it less, directly under `routes:`",
        ),
        (
            ROUTE + "    auth:\n      client_id: {K}\n",
            "routes.x.auth.client_id",
            'expected a string, got a mapping; in YAML {K} is a mapping: write "${K}" (with the $, in quotes)',
        ),
        (
            ROUTE + "    headers:\n      x-api-key: {K}\n",
            "routes.x.headers.x-api-key",
            'expected a string value, got a mapping; in YAML {K} is a mapping: write "${K}" (with the $, in quotes)',
        ),
        (
            ROUTE + "    headers: {x-api-key: ${K}}\n",
            "",
            "invalid YAML: line 4, column 27: expected ',' or '}', but got '{'; inside { } YAML reads the braces "
            'of ${VAR} as a mapping: quote the value, e.g. headers: {x-api-key: "${API_KEY}"}, or write one key '
            "per line",
        ),
    ],
)
def test_where_a_misplaced_key_belongs(text: str, path: str, message: str) -> None:
    assert only_problem(text) == (path, message)


def test_typos_get_a_did_you_mean_here_or_nearby() -> None:
    path, message = only_problem(ROUTE + "    auth:\n      clientid: a\n")
    assert (path, message.split(" expected")[0]) == (
        "routes.x.auth.clientid",
        "unknown key 'clientid'; did you mean 'client_id'?",
    )
    path, message = only_problem(ROUTE + "    clientid: a\n")
    assert path == "routes.x.clientid"
    assert message.startswith("unknown key 'clientid'; did you mean routes.x.auth.client_id? (keys here: auth, ")


async def test_check_names_where_each_key_belongs(tmp_path: Path) -> None:
    """The first run, as the user saw it: `authproxy check` on a config with the usual slips."""
    config = write(
        tmp_path,
        "stex:\n  preset: stex\n"
        "routes:\n  stockx:\n    preset: stockx\n    headers:\n      x-api-key: ${STOCKX_API_KEY}\n"
        "    client_id: ${STOCKX_CLIENT_ID}\n    auth:\n      client_secret: ${STOCKX_CLIENT_SECRET}\n",
    )
    env = {**os.environ, "STOCKX_API_KEY": "k", "STOCKX_CLIENT_ID": "i", "STOCKX_CLIENT_SECRET": "SENTINEL"}
    code, out, err = await run_cli("check", "-c", config, env=env)
    assert (code, out) == (2, "")
    assert "stex: 'stex' looks like a route: indent it two spaces under a `routes:` line" in err
    assert (
        "routes.stockx.client_id: unknown key 'client_id' here; it belongs at routes.stockx.auth.client_id "
        "(indent it under `auth:`)"
    ) in err
    assert "SENTINEL" not in err and "Traceback" not in err
