"""The README's first minutes are true: the "your own API" quickstart runs as written (URLs swapped for
fakes), each provider quickstart names the redirect URIs the code uses, and every extra is listed."""

from __future__ import annotations

import re
import shlex
import tomllib
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from authproxy.config.load import parse_config
from authproxy.login.routes import callback_path

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()


def section(heading: str) -> str:
    """The text under `heading` up to the next heading of the same or a higher level."""
    level = heading.split(" ", 1)[0]
    body = README.split(f"\n{heading}\n", 1)[1]
    ends = [m.start() for m in re.finditer(rf"^#{{1,{len(level)}}} ", body, re.M)]
    return body[: ends[0]] if ends else body


def blocks(text: str, lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", text, re.S)


# -- "Your own API in ten lines" ----------------------------------------------------------------


async def test_your_own_api_quickstart_runs_as_written(make_proxy, upstream, token_server, client) -> None:
    text = section("## Your own API in ten lines")
    assert README.index("## Your own API in ten lines") < README.index("## Quickstart per provider")
    (config,) = blocks(text, "yaml")
    (commands,) = blocks(text, "sh")
    assert len([ln for ln in config.splitlines() if ln.split("#", 1)[0].strip()]) <= 10
    export, run, curl = commands.strip().splitlines()
    assert run == "authproxy run -c config.yaml"
    env = dict(pair.split("=", 1) for pair in shlex.split(export)[1:])
    assert set(env) == set(re.findall(r"\$\{(\w+)\}", config))
    (url,) = [word for word in shlex.split(curl, comments=True) if word.startswith("http://127.0.0.1:8080/")]

    runnable = config.replace("https://api.example.com", upstream.url).replace(
        "https://auth.example.com/oauth/token", token_server.url
    )
    assert runnable != config and token_server.url in runnable
    proxy = await make_proxy(runnable, env=env)
    async with client.get(url.replace("http://127.0.0.1:8080", proxy.url)) as resp:
        assert resp.status == 200
    assert upstream.last.raw_path == "/v1/things"
    assert upstream.last.headers["Authorization"] == "Bearer at-1"
    (token_request,) = token_server.requests
    assert token_request.basic_auth() == (env["MY_CLIENT_ID"], env["MY_CLIENT_SECRET"])
    assert token_request.params == {"grant_type": "client_credentials"}


# -- redirect URIs per provider -----------------------------------------------------------------

PROVIDERS = [m.group(0) for m in re.finditer(r"^### .*$", section("## Quickstart per provider"), re.M)]
ENV = {
    name: "https://x.example"  # the variables the snippets read: any value does here, some must be URLs
    for name in re.findall(r"\$\{(\w+)\}", README)
}


def routes_of(heading: str) -> dict:
    (config, *_) = blocks(section(heading), "yaml")
    config = re.sub(r"(\w+)_file: \S+", r"\1: x", config)  # a secret file the snippet mounts: a value here
    return parse_config(config, env=ENV).routes


@pytest.mark.parametrize("heading", PROVIDERS)
def test_each_provider_quickstart_says_which_redirect_uris_to_register(heading: str) -> None:
    text = " ".join(section(heading).split())
    logins = {name: r for name, r in routes_of(heading).items() if r.auth.grant == "authorization_code"}
    if not logins:
        assert "no redirect URI to register" in text
        return
    (marker,) = re.findall(r"<!-- redirect-uris: ([^>]*) -->", text)
    assert marker.split() == list(logins)
    for name, route in logins.items():
        assert f"`{route.auth.redirect_uri}` for `authproxy login`" in text  # what the CLI login listens on
        assert f"`http://127.0.0.1:8080{callback_path(name)}`" in text  # what /-/login/ROUTE sends


async def test_the_web_login_sends_the_redirect_uri_the_readme_names(make_proxy, client) -> None:
    """/-/login/stockx on the real app: the redirect_uri it sends is the README's, on this proxy's port."""
    heading = next(h for h in PROVIDERS if "StockX" in h)
    (config, *_) = blocks(section(heading), "yaml")
    proxy = await make_proxy(config, env=ENV)
    async with client.get(proxy.at("/-/login/stockx"), allow_redirects=False) as resp:
        assert resp.status == 302
        location = resp.headers["Location"]
    sent = parse_qs(urlsplit(location).query)["redirect_uri"]
    documented = "http://127.0.0.1:8080/-/login/stockx/callback"
    assert documented in " ".join(section(heading).split())
    assert sent == [documented.replace("http://127.0.0.1:8080", proxy.url)]


# -- extras and licence -------------------------------------------------------------------------


def test_readme_lists_every_extra_and_the_licence_exists() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = section("## Set-up").split("Optional extras:", 1)[1].split("\n\n", 1)[0]
    for name in project["optional-dependencies"]:
        assert f"'.[{name}]'" in extras, name
    licence = (ROOT / "LICENSE").read_text()
    assert project["license"] == {"text": "MIT"}
    assert licence.startswith("MIT License\n\nCopyright (c) ") and "authproxy contributors" in licence.splitlines()[2]
