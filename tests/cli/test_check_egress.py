"""`authproxy check` names each route's egress (proxy or direct, and why), masks its password, and refuses bad input."""

from __future__ import annotations

import os

from tests.cli.test_main import run_cli, write

CONFIG = """
egress_proxy: {url: "http://alice:S3NTINEL-PW@proxy.corp:3128", no_proxy: [internal.corp]}
routes:
  api:
    upstream: https://api.example.com
    auth: {grant: client_credentials, token_url: https://login.internal.corp/token, client_id: c, client_secret: s}
  local:
    upstream: http://127.0.0.1:9000
    egress_proxy: {url: none}
  envy:
    upstream: https://other.example
    egress_proxy: {no_proxy: []}
"""


async def test_check_prints_which_egress_each_route_uses(tmp_path) -> None:
    env = {**os.environ, "HTTPS_PROXY": "http://env-proxy:8080"}
    code, out, err = await run_cli("check", "--show-config", "-c", write(tmp_path, CONFIG), env=env)
    assert code == 0, err
    assert "S3NTINEL" not in out + err
    lines = [line for line in out.splitlines() if line.startswith("# egress")]
    assert lines == [
        "# egress api: upstream http://alice:********@proxy.corp:3128 (from egress_proxy.url)",
        "# egress api: token endpoint direct (from egress_proxy.no_proxy entry 'internal.corp')",
        "# egress envy: upstream http://env-proxy:8080 (from env HTTPS_PROXY)",
        "# egress local: upstream direct (from routes.local.egress_proxy.url: none)",
    ]
    assert "url: http://alice:********@proxy.corp:3128" in out


async def test_check_refuses_an_unsupported_proxy_scheme_and_warns_about_bad_no_proxy(tmp_path) -> None:
    config = write(tmp_path, "routes:\n  api: {upstream: https://api.example.com}\n")
    env = {**os.environ, "HTTPS_PROXY": "socks5://u:S3NTINEL@p:1080"}
    code, _, err = await run_cli("check", "-c", config, env=env)
    assert code == 2
    assert "env HTTPS_PROXY: scheme socks5:// is not supported; write http://host:port" in err
    assert "S3NTINEL" not in err and "Traceback" not in err
    env = {**os.environ, "NO_PROXY": "api.example.com, 10.0.0.0/99"}
    code, out, err = await run_cli("check", "-c", config, env=env)
    assert code == 0, err
    assert "'10.0.0.0/99' is not a host name, IP address, CIDR range, host:port or *" in err
    assert "# egress" not in out  # direct because nothing is configured: no line
