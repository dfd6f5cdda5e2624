"""`authproxy status`: from the running proxy's /-/status (with the admin key), else from the store."""

from __future__ import annotations

import json
import re

from authproxy.cli.status import from_proxy, timestamp
from tests.cli.helpers import cc_route, cli, free_port, start_proxy, stop
from tests.fakes.token_server import Reply

ISO = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ"


def test_reads_epoch_numbers_and_iso_strings_alike() -> None:
    """/-/status before and after its timestamps became ISO 8601 strings."""
    assert timestamp("2026-12-04T11:22:47Z") == timestamp(1796383367) == 1796383367.0
    assert timestamp("2026-12-04T11:22:47+00:00") == 1796383367.0
    assert timestamp("yesterday") is None and timestamp(None) is None and timestamp(True) is None
    old = {"name": "api", "grant": "client_credentials", "token": {"state": "valid", "expires_in": 60}}
    new = {
        "name": "api",
        "grant": "client_credentials",
        "token": {"state": "valid", "expires_at": "2026-12-04T11:22:47Z"},
    }
    assert from_proxy(new)["expires_at"] == "2026-12-04T11:22:47Z"
    assert re.fullmatch(ISO, from_proxy(old)["expires_at"]) and from_proxy(old)["expires_in"] in (59, 60)
    assert from_proxy({"name": "open", "grant": "none", "token": None})["state"] == "no token needed"


async def test_status_from_the_store_then_from_the_running_proxy(tmp_path, token_server) -> None:
    port, store = free_port(), tmp_path / "tokens.json"
    (tmp_path / "my.yaml").write_text(
        f"listen: 127.0.0.1:{port}\nadmin: {{key: SENTINEL-ADMIN-KEY-0123456789}}\n"
        f"store: {{kind: file, path: '{store}'}}\nroutes:\n" + cc_route("api", token_server.url)
    )
    token_server.script = [Reply.token("at-1", 3600)]
    code, out, err = await cli("status", "-c", "my.yaml", cwd=tmp_path)
    assert (code, err) == (0, "")
    assert out == (
        f"no proxy answers at 'http://127.0.0.1:{port}/-/status'; from the token store ({store}). "
        "Start the proxy: authproxy run -c my.yaml\n"
        "ROUTE  GRANT               STATE           EXPIRES\n"
        "api    client_credentials  nothing stored  -\n"
    )
    assert (await cli("token", "api", "-c", "my.yaml", cwd=tmp_path))[:2] == (0, "at-1\n")
    code, out, _ = await cli("status", "-c", "my.yaml", cwd=tmp_path)
    assert re.search(rf"\napi    client_credentials  valid  {ISO} \(in (59|60) min\)\n$", out), out

    proxy = await start_proxy("my.yaml", tmp_path)
    try:
        code, out, err = await cli("status", "-c", "my.yaml", cwd=tmp_path)
        assert (code, err) == (0, "")
        assert out.startswith(f"from the running proxy at 'http://127.0.0.1:{port}/-/status'\n"), out
        assert re.search(rf"\napi    client_credentials  valid  {ISO} \(in (59|60) min\)\n$", out), out
        code, out, _ = await cli("status", "-c", "my.yaml", "--json", cwd=tmp_path)
        document = json.loads(out)
        assert document["source"] == "proxy" and document["url"] == f"http://127.0.0.1:{port}/-/status"
        (row,) = document["routes"]
        assert (row["route"], row["grant"], row["state"]) == ("api", "client_credentials", "valid")
        assert re.fullmatch(ISO, row["expires_at"]) and 3500 < row["expires_in"] <= 3600
        assert "SENTINEL" not in out
    finally:
        await stop(proxy)
    assert len(token_server.requests) == 1  # the proxy started from the stored token
