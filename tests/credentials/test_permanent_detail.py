"""A permanent token error keeps the provider's `error_description` for operators (redacted): for
invalid_scope or unauthorized_client it is the only clue. Proxy clients never see it."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.cli.test_main import run_cli, write
from tests.conftest import wait_until
from tests.fakes.token_server import Reply

SECRET = "SENTINEL-perm-secret"
ERRORS = [
    ("invalid_scope", "scope 'withdrawal' is not allowed for this client"),
    ("unauthorized_client", "client may not use grant client_credentials"),
]


def config(upstream_url: str, token_url: str) -> dict:
    return {
        "routes": {
            "api": {
                "upstream": upstream_url,
                "auth": {
                    "grant": "client_credentials",
                    "token_url": token_url,
                    "client_id": "cid",
                    "client_secret": SECRET,
                    "scope": "withdrawal",
                },
            }
        }
    }


@pytest.mark.parametrize(("error", "description"), ERRORS)
async def test_log_and_status_show_it_client_body_does_not(
    make_proxy, upstream, token_server, client, logs, error, description
) -> None:
    token_server.default = lambda request: Reply.error(error, f"{description} (you sent {SECRET})")
    proxy = await make_proxy(config(upstream.url, token_server.url))
    await wait_until(lambda: len(token_server.requests) == 1)
    await proxy.credential().wait_idle()

    async with client.get(proxy.at("/api/things")) as resp:
        assert resp.status == 503
        body = await resp.text()
    assert '"code": "credential_failed"' in body
    assert description not in body and "you sent" not in body and SECRET not in body

    expected = f"token endpoint answered HTTP 400: {error} ({description} (you sent ***))"
    (failed,) = [e for e in logs.events if e["event"] == "token_fetch_failed"]
    assert (failed["outcome"], failed["error_code"], failed["detail"]) == ("failed", error, expected)
    async with client.get(proxy.at("/-/status")) as resp:
        (api,) = (await resp.json())["routes"]
    assert (api["token"]["last_error_code"], api["token"]["last_error_detail"]) == (error, expected)
    assert SECRET not in logs.text and upstream.seen == []


async def test_the_token_command_prints_it(tmp_path: Path, token_server) -> None:
    error, description = ERRORS[0]
    token_server.default = lambda request: Reply.error(error, f"{description} (you sent {SECRET})")
    path = write(
        tmp_path,
        "routes:\n  api:\n    upstream: https://api.example.com\n    auth:\n      grant: client_credentials\n"
        f"      token_url: {token_server.url}\n      client_id: cid\n      client_secret: {SECRET}\n"
        "      scope: withdrawal\n",
    )
    code, out, err = await run_cli("token", "api", "-c", path)
    assert (code, out) == (1, "")
    assert err.startswith(
        "api: the token endpoint refused route 'api' (invalid_scope): check auth.scope against "
        f"the scopes this client may request; the provider said: {description} (you sent ***)\n"
    )
