"""`authproxy postman` and `authproxy run --trace`, run as real subprocesses."""

from __future__ import annotations

import json

from tests.cli.test_main import run_cli, write

CONFIG = """
listen: 127.0.0.1:8123
clients:
  alice: {key: SENTINEL-member-key-0123456789}
routes:
  stockx:
    upstream: https://api.example.com/v2
    headers: {x-api-key: SENTINEL-api-key}
    auth: {grant: client_credentials, token_url: https://auth.example.com/token, client_id: cid,
           client_secret: SENTINEL-client-secret}
  open-data:
    upstream: https://open.example.com
    prefix: /open
"""


async def test_postman_writes_a_collection_and_environment_without_secrets(tmp_path) -> None:
    config = write(tmp_path, CONFIG)
    code, out, err = await run_cli("postman", "-c", config, "-o", str(tmp_path / "out"))
    assert (code, err) == (0, "")
    collection_path = tmp_path / "out" / "authproxy.postman_collection.json"
    environment_path = tmp_path / "out" / "authproxy.postman_environment.json"
    assert f"wrote {collection_path}" in out
    collection = json.loads(collection_path.read_text())
    environment = json.loads(environment_path.read_text())
    assert collection["info"]["schema"] == "https://schema.getpostman.com/json/collection/v2.1.0/collection.json"
    assert [folder["name"] for folder in collection["item"]] == ["stockx", "open-data"]
    assert collection["item"][1]["item"][0]["request"]["url"]["raw"] == "{{base_open_data}}/"
    # team mode: the member's own proxy key as a Bearer variable, left empty
    assert collection["auth"] == {
        "type": "bearer",
        "bearer": [{"key": "token", "value": "{{authproxy_key}}", "type": "string"}],
    }
    assert {v["key"]: v["value"] for v in environment["values"]} == {
        "base_stockx": "http://127.0.0.1:8123/stockx",
        "base_open_data": "http://127.0.0.1:8123/open",
        "authproxy_key": "",
    }
    assert "SENTINEL" not in collection_path.read_text() + environment_path.read_text()


async def test_postman_refuses_a_bad_base_url(tmp_path) -> None:
    code, _, err = await run_cli("postman", "-c", write(tmp_path, CONFIG), "--base-url", "127.0.0.1:8080")
    assert code == 2 and "--base-url: '127.0.0.1:8080' must start with http://" in err


async def test_run_trace_names_an_unknown_route_and_the_known_ones(tmp_path) -> None:
    code, _, err = await run_cli("run", "-c", write(tmp_path, CONFIG), "--trace", "stockz")
    assert code == 2 and err.strip() == "--trace: no route 'stockz'; expected one of: all, stockx, open-data"
