"""Issue 17: what a new user trips over in the first ten minutes, run as the user ran it."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import urllib.error
import urllib.request

import pytest

from authproxy.cli.main import _parser
from authproxy.config.load import parse_config
from authproxy.credentials.build import not_configured, not_configured_error
from tests.cli.helpers import ROOT, cc_route, cli, env, free_port, login_route, start_proxy, stop
from tests.fakes.token_server import Reply

# -- 1. a taken port ------------------------------------------------------------------------------------


async def test_run_and_demo_fail_in_one_line_before_any_token_request(tmp_path, token_server) -> None:
    (tmp_path / "my.yaml").write_text("routes:\n" + cc_route("api", token_server.url))
    with socket.create_server(("127.0.0.1", 0)) as other:  # another program holds the port
        port = other.getsockname()[1]
        code, out, err = await cli("run", "-c", "my.yaml", "--listen", f"127.0.0.1:{port}", cwd=tmp_path)
        assert (code, out) == (2, "")
        assert err == (
            f"cannot listen on 127.0.0.1:{port}: the address is in use, probably by another program; stop it, or "
            f"choose another address with --listen: authproxy run -c my.yaml --listen 127.0.0.1:{port + 1}\n"
        )
        code, _, err = await cli("demo", "--listen", f"127.0.0.1:{port}", cwd=tmp_path)
        assert code == 2
        assert err.endswith(
            f"another program; stop it, or choose another address with --listen: "
            f"authproxy demo --listen 127.0.0.1:{port + 1}\n"
        ), err
    assert token_server.requests == []  # the bind comes first


async def test_a_port_held_by_another_authproxy_is_named(tmp_path) -> None:
    port = free_port()
    (tmp_path / "config.yaml").write_text(
        f"listen: 127.0.0.1:{port}\nroutes:\n  open: {{upstream: 'http://x.example'}}\n"
    )
    proxy = await start_proxy("config.yaml", tmp_path)
    try:
        code, _, err = await cli("run", cwd=tmp_path)
        assert code == 2 and err.count("\n") == 1 and "Traceback" not in err
        assert f"127.0.0.1:{port}: the address is in use, probably by another authproxy (its /-/health answers)" in err
        assert err.endswith(f"--listen: authproxy run --listen 127.0.0.1:{port + 1}\n")
    finally:
        await stop(proxy)


# -- 5, 6, 7, 8, 10: check ----------------------------------------------------------------------------------


def test_not_configured_names_the_variables_to_set() -> None:
    text = "routes:\n  acme:\n    upstream: https://x.example\n    headers: {x-api-key: '${ACME_KEY:-}'}\n"
    text += "    auth: {grant: client_credentials, token_url: /t, client_id: '${ACME_ID:-}', client_secret: ''}\n"
    route = parse_config(text, env={}).routes["acme"]
    assert route.env_vars == {"headers.x-api-key": "ACME_KEY", "auth.client_id": "ACME_ID"}
    assert not_configured_error(route, not_configured(route)).message == (
        "route 'acme' is not configured: routes.acme.headers.x-api-key, routes.acme.auth.client_id and "
        "routes.acme.auth.client_secret are empty; set ACME_KEY=... ACME_ID=... in the environment (export, or an "
        ".env file) and fill in the other keys, then restart authproxy"
    )


async def test_a_fresh_clone_says_where_it_looked_and_what_to_copy(tmp_path) -> None:
    shutil.copy(ROOT / "config.example.yaml", tmp_path / "config.example.yaml")
    for command in ("run", "check", "status"):
        code, out, err = await cli(command, cwd=tmp_path)
        assert (code, out) == (2, ""), err
        assert err == (
            "config.yaml: 1 problem(s):\n"
            f"  - no config file at {tmp_path / 'config.yaml'}; cp config.example.yaml config.yaml to start from the "
            "example, or give another file with -c FILE\n"
        ), err


def rows(out: str) -> dict[str, list[str]]:
    """The table's route lines: name -> [prefix, upstream, grant, state]."""
    found = {}
    for line in out.splitlines()[1:]:
        if line and not line.startswith(" ") and not line.startswith("config "):
            name, *rest = line.split(None, 4)
            found[name] = rest
    return found


async def test_check_prints_a_short_table_with_what_to_do(tmp_path, token_server) -> None:
    (tmp_path / "login.yaml").write_text(
        "routes:\n  open: {upstream: 'https://open.example'}\n"
        + cc_route("cc", token_server.url)
        + login_route("acme")
        + cc_route("vars", token_server.url, client_id="'${CHECK_TEST_CLIENT_ID:-}'")
    )
    code, out, err = await cli("check", "-c", "login.yaml", cwd=tmp_path)
    assert (code, err) == (0, "")
    assert rows(out) == {
        "open": ["/open", "https://open.example", "none", "ready: no credential injected"],
        "cc": ["/cc", "https://cc.example", "client_credentials", "ready"],
        "acme": [
            "/acme",
            "https://acme.example",
            "authorization_code",
            "needs login: authproxy login -c login.yaml acme",
        ],
        "vars": ["/vars", "https://vars.example", "client_credentials", "not configured: set CHECK_TEST_CLIENT_ID=..."],
    }
    assert (
        "    redirect URIs to register with the provider: 'http://127.0.0.1:8080/-/login/acme/callback' (web login), "
        "'http://127.0.0.1:8765/callback' (authproxy login)\n" in out
    )
    assert out.splitlines()[-1] == (
        "config login.yaml is valid; 2 of 4 route(s) ready (1 needs login, 1 not configured). "
        "`authproxy check -c login.yaml --online` requests one token per route"
    )
    assert "SENTINEL" not in out and "upstream:" not in out  # no YAML dump unless asked
    assert token_server.requests == []

    code, out, _ = await cli("check", "-c", "login.yaml", "--strict", cwd=tmp_path)
    assert code == 1
    code, out, _ = await cli("check", "-c", "login.yaml", "--json", cwd=tmp_path)
    document = json.loads(out)
    assert code == 0 and document["config"] == "login.yaml"
    states = {r["name"]: (r["state"], r["variables"]) for r in document["routes"]}
    assert states == {
        "open": ("ready", []),
        "cc": ("ready", []),
        "acme": ("needs login", []),
        "vars": ("not configured", ["CHECK_TEST_CLIENT_ID"]),
    }


async def test_check_online_requests_one_token_per_route_and_reports_each(tmp_path, token_server) -> None:
    (tmp_path / "config.yaml").write_text(
        "routes:\n" + cc_route("good", token_server.url) + cc_route("gone", token_server.base_url + "/nope")
    )
    token_server.script = [Reply.token("at-good", 3600), Reply.text(b"Not Found", status=404)]
    code, out, err = await cli("check", "--online", cwd=tmp_path)
    assert (code, err) == (1, "")  # each failure once, in the table: no log line besides
    lines = out.splitlines()
    assert re.fullmatch(r"    online token: ok: got a token \(valid 3[56]\d\d s\)", lines[2]), lines
    assert lines[4] == (
        "    online token: FAILED: token endpoint answered HTTP 404 (content-type text/plain, no OAuth "
        f"error); check routes.gone.auth.token_url ({token_server.base_url}/nope)"
    )
    assert lines[-1] == "config config.yaml is valid; 2 of 2 route(s) ready; online: 1 failed"
    assert [r.path for r in token_server.requests] == ["/oauth/token", "/nope"]


# -- 9: token -------------------------------------------------------------------------------------------


async def test_token_uses_the_store_and_fresh_forces_a_new_one(tmp_path, token_server) -> None:
    store = tmp_path / "tokens.json"
    (tmp_path / "config.yaml").write_text(
        f"store: {{kind: file, path: '{store}'}}\nroutes:\n" + cc_route("api", token_server.url)
    )
    token_server.script = [Reply.token("at-first", 3600), Reply.token("at-second", 3600)]
    assert await cli("token", "api", cwd=tmp_path) == (0, "at-first\n", "")
    assert await cli("token", "api", cwd=tmp_path) == (0, "at-first\n", "")  # the stored, valid token
    assert len(token_server.requests) == 1
    assert await cli("token", "api", "--fresh", cwd=tmp_path) == (0, "at-second\n", "")
    assert len(token_server.requests) == 2


async def test_token_failures_are_one_plain_line(tmp_path, token_server) -> None:
    port = free_port()  # nothing listens there
    (tmp_path / "config.yaml").write_text(
        "routes:\n"
        + cc_route("down", f"http://127.0.0.1:{port}/token")
        + cc_route("gone", token_server.base_url + "/x")
    )
    code, out, err = await cli("token", "down", cwd=tmp_path)
    assert (code, out) == (1, "")
    assert err == f"down: cannot reach token endpoint 127.0.0.1:{port} (Connection refused)\n"
    token_server.script = [Reply.text(b"Not Found", status=404)]
    code, out, err = await cli("token", "gone", cwd=tmp_path)
    assert (code, out) == (1, "")
    assert err.count("\n") == 1 and "retrying" not in err
    assert err.endswith(f"; check routes.gone.auth.token_url ({token_server.base_url}/x)\n"), err


# -- 12: basics ---------------------------------------------------------------------------------------


async def test_version_help_examples_and_listen_range(tmp_path) -> None:
    assert await cli("--version", cwd=tmp_path) == (0, "authproxy 0.1.0\n", "")
    code, out, _ = await cli("--help", cwd=tmp_path)
    assert code == 0 and "Start with `authproxy demo`" in out
    for name in next(a for a in _parser()._actions if a.dest == "command").choices:
        code, out, _ = await cli(name, "--help", cwd=tmp_path)
        assert code == 0 and "examples:\n  authproxy " + name in out, name
    code, out, _ = await cli("token", "--help", cwd=tmp_path)
    assert "ROUTE                 a route name under `routes:` in the config" in out
    code, _, err = await cli("run", "--listen", "localhost:99999", cwd=tmp_path)
    assert code == 2 and err.endswith(
        "authproxy run: error: argument --listen: port 99999 is out of range (0-65535); write e.g. localhost:8080\n"
    )


def test_help_loads_nothing_heavy() -> None:
    probe = (
        "import sys\nfrom authproxy.cli.main import main\ntry:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
        "print(sorted(m for m in ('aiohttp', 'yaml', 'structlog', 'authproxy.config.load') if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env(), timeout=60)
    assert done.stdout.splitlines()[-1] == "[]"


SHELLS_REQUIRED = os.environ.get("AUTHPROXY_TEST_REQUIRE_SHELLS") == "1"  # .ci/run installs zsh and fish


@pytest.fixture
def on_path(tmp_path) -> dict[str, str]:
    """An `authproxy` command on PATH running this checkout, and a config with two routes in cwd."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "authproxy").write_text(f'#!/bin/sh\nexec {sys.executable} -m authproxy "$@"\n')
    (bin_dir / "authproxy").chmod(0o755)
    (tmp_path / "my.yaml").write_text("routes:\n  alpha: {upstream: 'http://a'}\n  beta: {upstream: 'http://b'}\n")
    return env(PATH=f"{bin_dir}:{os.environ['PATH']}")


def run_shell(shell: str, script: str, cwd, environment: dict[str, str]) -> list[str]:
    if shutil.which(shell) is None and not SHELLS_REQUIRED:
        pytest.skip(f"{shell} is not installed (.ci/run installs it)")
    done = subprocess.run([shell, "-c", script], capture_output=True, text=True, cwd=cwd, env=environment, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout.splitlines()


def test_bash_completion_completes_commands_options_and_routes(tmp_path, on_path) -> None:
    def complete(*words: str) -> str:
        script = (
            "source <(authproxy completion bash)\nCOMP_WORDS=(" + " ".join(f"'{w}'" for w in words) + ")\n"
            f'COMP_CWORD={len(words) - 1}\n_authproxy\necho "${{COMPREPLY[*]}}"\n'
        )
        return run_shell("bash", script, tmp_path, on_path)[0]

    assert complete("authproxy", "sta") == "status"
    assert complete("authproxy", "run", "--li") == "--listen"
    assert complete("authproxy", "token", "-c", "my.yaml", "") == "-h --help -c --config --json --fresh alpha beta"
    assert complete("authproxy", "completion", "z") == "zsh"


def test_zsh_completion_offers_commands_options_and_routes(tmp_path, on_path) -> None:
    """compadd is replaced by a stub that prints the candidates (zsh itself filters them by prefix)."""
    stubs = 'compdef() {}; compadd() { shift; print -r -- "$@"; }; _files() { print FILES; }'
    script = (
        f"{stubs}; source <(authproxy completion zsh); words=(authproxy sta); CURRENT=2; _authproxy; "
        'words=(authproxy token -c my.yaml ""); CURRENT=5; _authproxy; '
        'words=(authproxy run -c ""); CURRENT=4; _authproxy'
    )
    assert run_shell("zsh", script, tmp_path, on_path) == [
        "run check status token login logout discover exec demo presets postman completion --help --version",
        "-h --help -c --config --json --fresh alpha beta",
        "FILES",
    ]


def test_fish_completion_offers_commands_options_and_routes(tmp_path, on_path) -> None:
    script = (
        "authproxy completion fish | source; complete -C 'authproxy tok'; echo ---; "
        "complete -C 'authproxy token -c my.yaml '; echo ---; complete -C 'authproxy run --li'"
    )
    assert run_shell("fish", script, tmp_path, on_path) == ["token", "---", "alpha", "beta", "---", "--listen"]


# -- 13, 16: login and logout ------------------------------------------------------------------------------


@pytest.mark.parametrize("closed", [False, True], ids=["dev-null", "closed"])
async def test_login_no_browser_without_a_terminal_fails_at_once(tmp_path, closed) -> None:
    (tmp_path / "login.yaml").write_text("routes:\n" + login_route("acme", f"http://127.0.0.1:{free_port()}/cb"))
    args = ["login", "-c", "login.yaml", "acme", "--no-browser"]
    if closed:  # `<&-`: no stdin at all
        proc = await asyncio.create_subprocess_exec(
            "sh",
            "-c",
            'exec "$@" <&-',
            "sh",
            sys.executable,
            "-m",
            "authproxy",
            *args,
            cwd=tmp_path,
            env=env(),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out_b, err_b = await asyncio.wait_for(proc.communicate(), 60)
        code, out, err = proc.returncode, out_b.decode(), err_b.decode()
    else:
        code, out, err = await cli(*args, cwd=tmp_path)  # stdin is /dev/null
    assert (code, out) == (1, "")
    assert err == (
        "login failed: --no-browser reads the redirect URL from stdin, but stdin is closed or empty; run "
        "`authproxy login -c login.yaml acme --no-browser` in a terminal and paste the URL there, or log in "
        "through the running proxy at 'http://127.0.0.1:8080/-/login/acme'\n"
    )


async def test_logout_of_a_client_credentials_route_says_what_it_means(tmp_path, token_server) -> None:
    (tmp_path / "cc.yaml").write_text("routes:\n" + cc_route("acme", token_server.url))
    assert await cli("logout", "-c", "cc.yaml", "acme", cwd=tmp_path) == (
        0,
        "",
        "acme: nothing to log out: it uses client_credentials and keeps tokens in the proxy's memory only; restart "
        "the proxy, or get a new token with `authproxy token -c cc.yaml acme --fresh`\n",
    )


# -- 7: advice repeats the options given -------------------------------------------------------------------


async def test_login_advice_repeats_the_config_file_everywhere(tmp_path) -> None:
    port = free_port()
    (tmp_path / "login.yaml").write_text(f"listen: 127.0.0.1:{port}\nroutes:\n" + login_route("acme"))
    hint = "route 'acme' is not logged in (no refresh token stored); run: authproxy login -c login.yaml acme"
    assert await cli("token", "-c", "login.yaml", "acme", cwd=tmp_path) == (1, "", f"acme: {hint}\n")
    proxy = await start_proxy("login.yaml", tmp_path)
    try:
        request = urllib.request.Request(f"http://127.0.0.1:{port}/acme/x")
        with pytest.raises(urllib.error.HTTPError) as refused:
            await asyncio.to_thread(urllib.request.urlopen, request, timeout=10)
        assert refused.value.code == 503
        error = json.loads(refused.value.read())["error"]
        assert (error["code"], error["message"]) == ("login_required", hint)
    finally:
        await stop(proxy)


async def test_check_online_reports_discovery_per_route_then_a_token_from_the_discovered_endpoint(
    tmp_path, token_server
) -> None:
    from tests.fakes.idp import FakeIdp

    idp = FakeIdp(token_server)
    idp.serve_oidc(token_endpoint_auth_methods_supported=["client_secret_post"])
    # a second issuer on the same server whose "metadata" is a login page
    idp.documents["/html/.well-known/openid-configuration"] = Reply.text(b"<html>login</html>", status=200)
    (tmp_path / "config.yaml").write_text(
        "routes:\n"
        "  idp:\n    upstream: https://idp.example\n    auth:\n      grant: client_credentials\n"
        f"      issuer: {idp.issuer}\n      client_id: cid\n      client_secret: SENTINEL-SECRET\n"
        "  html:\n    upstream: https://html.example\n    auth:\n      grant: client_credentials\n"
        f"      issuer: {idp.issuer}/html\n      client_id: cid\n      client_secret: SENTINEL-SECRET\n"
    )
    code, out, err = await cli("check", "--online", cwd=tmp_path)
    assert (code, err) == (1, "")
    lines = out.splitlines()
    discovery = [line.strip() for line in lines if line.strip().startswith("online discovery")]
    assert discovery[0].startswith(
        f"online discovery: ok: {idp.issuer}/.well-known/openid-configuration: filled token_url"
    ), lines
    # the route uses client_secret_basic (the default); the server advertises only client_secret_post
    assert "warning:" in discovery[0] and "client_secret_basic" in discovery[0], discovery[0]
    assert discovery[1].startswith("online discovery: FAILED: "), discovery
    assert "check routes.html.auth.issuer" in discovery[1] and f"{idp.issuer}/html" in discovery[1], discovery
    assert "SENTINEL-SECRET" not in out
    assert [r.path for r in idp.requests_to("/token")] == ["/token"]  # one token, from the discovered endpoint
