"""config.example.yaml: valid, all five providers, secrets only as ${VARS}/_file, and it starts
with no credentials set, each such route answering 503 `not_configured` and listed as not ready.
"""

from __future__ import annotations

import asyncio
import dataclasses
import importlib.util
import os
import re
import subprocess
import sys
import typing
from pathlib import Path
from typing import Any

import pytest
import yaml

from authproxy.clock import SystemClock
from authproxy.config.load import load_config, parse_config
from authproxy.config.schema import AuthConfig, Config, RouteConfig
from authproxy.credentials.build import build_credential, build_source, not_configured
from authproxy.errors import ConfigError, NotConfigured
from authproxy.stores.memory import MemoryStore
from authproxy.upstream.pool import NativeTransport

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "config.example.yaml"
K8S = ROOT / "deploy" / "kubernetes" / "sidecar.yaml"
ENV_FILE = ROOT / "deploy" / "authproxy.env.example"
SECRET_REF = re.compile(r"^\$\{[A-Z][A-Z0-9_]*(:-)?\}$")


def example_env_names() -> set[str]:
    """Variables the example config reads (comments aside)."""
    lines = [line.split("#", 1)[0] for line in EXAMPLE.read_text().splitlines()]
    return set(re.findall(r"\$\{([A-Z][A-Z0-9_]*)", "\n".join(lines)))


def secret_values(raw: Any, cls: type, path: str) -> list[tuple[str, Any]]:
    """(key path, raw value) of every secret in the raw YAML, per the schema's `secret` metadata."""
    found: list[tuple[str, Any]] = []
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    for key, value in (raw or {}).items():
        field = fields.get(key)
        if field is None:
            continue  # `<key>_file`: a path, not a secret
        tp = hints[key]
        if key == "routes":
            for name, route in value.items():
                found += secret_values(route, RouteConfig, f"routes.{name}")
        elif dataclasses.is_dataclass(tp):
            found += secret_values(value, tp, f"{path}.{key}")
        elif field.metadata.get("secret"):
            items = value.items() if isinstance(value, dict) else [("", value)]
            found += [(f"{path}.{key}.{k}".rstrip("."), v) for k, v in items if not k.endswith("_file")]
    return found


def test_example_config_is_valid_with_nothing_set() -> None:
    config = load_config(EXAMPLE, env={})
    presets = {route.preset for route in config.routes.values()}
    assert presets == {"stockx", "stex", "stonex", "tradevest", "o-token"}
    assert config.listen == "127.0.0.1:8080" and config.allow_anonymous is True
    assert load_config(EXAMPLE, env={"AUTHPROXY_LISTEN": "0.0.0.0:8080"}).listen == "0.0.0.0:8080"


def test_secrets_are_only_environment_references() -> None:
    raw = yaml.safe_load(EXAMPLE.read_text())
    secrets = secret_values(raw, Config, "")
    # seven client secrets (STEX and the /o/token/ API twice: a route per sensitive scope), StockX's
    # x-api-key, the store's Redis URL
    assert len(secrets) == 9
    for path, value in secrets:
        assert isinstance(value, str) and SECRET_REF.match(value), f"{path}: {value!r} must be a ${{VAR}}"
    for name, route in raw["routes"].items():
        client_id = route["auth"]["client_id"]
        assert SECRET_REF.match(client_id), f"routes.{name}.auth.client_id"


def test_env_file_example_names_every_provider_variable() -> None:
    names = {line.split("=", 1)[0] for line in ENV_FILE.read_text().splitlines() if re.match(r"^[A-Z]", line)}
    names |= set(re.findall(r"^# ([A-Z_]+)=", ENV_FILE.read_text(), re.M))
    provider_vars = {n for n in example_env_names() if not n.startswith("AUTHPROXY_")}
    assert provider_vars <= names, provider_vars - names
    values = [line for line in ENV_FILE.read_text().splitlines() if re.match(r"^[A-Z]", line)]
    assert all(line.endswith("=") for line in values), "the example holds names, never values"


def test_check_passes_with_no_credentials_set(tmp_path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in example_env_names()}
    env["PYTHONPATH"] = str(ROOT)
    done = subprocess.run(
        [sys.executable, "-m", "authproxy", "check", "-c", str(EXAMPLE)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    assert "is valid; 0 of 7 route(s) ready (7 not configured)" in done.stdout
    assert "not configured: set STONEX_CLIENT_ID=... STONEX_CLIENT_SECRET=...\n" in done.stdout
    assert "together with" not in done.stderr  # no route mixes a sensitive scope with everyday ones


def test_kubernetes_snippet_config_is_valid() -> None:
    configmap = next(d for d in yaml.safe_load_all(K8S.read_text()) if d["kind"] == "ConfigMap")
    secret_file = "/run/secrets/authproxy/STONEX_CLIENT_SECRET"
    text = configmap["data"]["config.yaml"]
    assert secret_file in text
    config = parse_config(text.replace(secret_file, str(EXAMPLE)), env={})  # any readable file will do
    assert config.listen == "127.0.0.1:8080" and not config.allow_anonymous
    assert list(config.routes) == ["stonex"]


# -- the "not configured" case -------------------------------------------------------------------------


def route(auth: str, headers: str = "") -> RouteConfig:
    text = f"routes:\n  r:\n    upstream: https://u.example\n{headers}    auth: {{{auth}}}\n"
    return parse_config(text, env={}).routes["r"]


CC = "grant: client_credentials, token_url: /t"


@pytest.mark.parametrize(
    ("auth", "headers", "empty"),
    [
        (f"{CC}, client_id: '', client_secret: ''", "", ["auth.client_id", "auth.client_secret"]),
        (f"{CC}, client_id: id, client_secret: ''", "", ["auth.client_secret"]),
        (f"{CC}, client_id: id, client_secret: s", "    headers: {x-api-key: ''}\n", ["headers.x-api-key"]),
        ("grant: static, token: ''", "", ["auth.token"]),
        ("grant: none", "    headers: {x-api-key: ''}\n", ["headers.x-api-key"]),
        (f"{CC}, client_auth: none, client_id: ''", "", ["auth.client_id"]),
        (f"{CC}, client_id: id, client_secret: s", "", []),
    ],
)
def test_empty_settings_are_not_configured(auth: str, headers: str, empty: list[str]) -> None:
    assert not_configured(route(auth, headers)) == [f"routes.r.{key}" for key in empty]


def test_absent_settings_stay_config_errors() -> None:
    with pytest.raises(ConfigError) as err:
        parse_config(f"routes:\n  r:\n    upstream: https://u.example\n    auth: {{{CC}, client_id: id}}\n", env={})
    assert "routes.r.auth.client_secret" in str(err.value)
    absent = dataclasses.replace(route(f"{CC}, client_id: id, client_secret: s"), auth=AuthConfig(grant="static"))
    with pytest.raises(ConfigError):  # built without the loader: an absent token is still an error
        build_source(absent, SystemClock(), NativeTransport())


async def test_not_configured_credential_fails_fast_and_reports_not_configured(transport) -> None:
    cfg = route(f"{CC}, client_id: '', client_secret: ''", "    headers: {x-api-key: ''}\n")
    credential = build_credential(cfg, transport=transport, store=MemoryStore(), clock=SystemClock())
    assert credential is not None and credential.state == "not_configured"
    credential.start()
    with pytest.raises(NotConfigured) as err:
        await credential.current()
    assert err.value.code == "not_configured" and err.value.status == 503
    for key in ("routes.r.auth.client_id", "routes.r.auth.client_secret", "routes.r.headers.x-api-key"):
        assert key in err.value.message
    with pytest.raises(NotConfigured):
        await credential.refresh()
    status = credential.status()
    assert status["state"] == "not_configured" and status["valid"] is False
    assert status["last_error_code"] == "not_configured"
    await credential.close()


async def test_example_config_serves_with_nothing_set(make_proxy, client) -> None:
    proxy = await make_proxy(EXAMPLE.read_text(), env={})
    for name, cfg in proxy.config.routes.items():
        async with client.get(proxy.at(f"{cfg.prefix}/anything")) as response:
            body = await response.json()
        assert response.status == 503, name
        assert body["error"]["code"] == "not_configured" and body["error"]["route"] == name
        assert f"routes.{name}.auth.client_id" in body["error"]["message"]
    async with client.get(proxy.at("/-/health")) as response:
        assert response.status == 200
    async with client.get(proxy.at("/-/ready")) as response:
        assert response.status == 503
        text = await response.text()
    for name in proxy.config.routes:
        assert name in text


async def test_compose_example_app_reaches_the_proxy_without_credentials(make_proxy, monkeypatch) -> None:
    proxy = await make_proxy(EXAMPLE.read_text(), env={})
    spec = importlib.util.spec_from_file_location("example_app", ROOT / "deploy" / "example-app" / "app.py")
    assert spec is not None and spec.loader is not None
    app = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(app)
    monkeypatch.setattr(app, "BASE", proxy.url)
    status, body = await asyncio.to_thread(app.get, "/stonex/api/v/")
    assert status == 503 and "not_configured" in body
    status, body = await asyncio.to_thread(app.get, "/-/health")
    assert status == 200
