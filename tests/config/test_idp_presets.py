"""Identity-provider presets: each one's resolved URLs pinned, and every mistake in its parameters named."""

from __future__ import annotations

import re
from importlib import resources
from pathlib import Path

import pytest
import yaml

from authproxy.config.load import parse_config
from authproxy.config.presets import load_preset, preset_names
from authproxy.config.schema import AuthConfig
from authproxy.errors import ConfigError


def route_with(preset: str, auth: str = "{client_id: cid, client_secret: s, scope: x}") -> str:
    return f"routes:\n  api:\n    preset: {preset}\n    upstream: https://api.example.com\n    auth: {auth}\n"


def problems(text: str) -> list[tuple[str, str]]:
    with pytest.raises(ConfigError) as info:
        parse_config(text, env={})
    return info.value.problems


@pytest.mark.parametrize(
    ("preset", "grant", "token", "authorize", "revoke"),
    [
        (
            "{name: auth0, domain: acme.eu.auth0.com, audience: 'https://orders.acme.example'}",
            "client_credentials",
            "https://acme.eu.auth0.com/oauth/token",
            "https://acme.eu.auth0.com/authorize",
            "https://acme.eu.auth0.com/oauth/revoke",
        ),
        (
            "{name: okta, domain: dev-123456.okta.com}",
            "client_credentials",
            "https://dev-123456.okta.com/oauth2/default/v1/token",
            "https://dev-123456.okta.com/oauth2/default/v1/authorize",
            "https://dev-123456.okta.com/oauth2/default/v1/revoke",
        ),
        (
            "{name: okta, domain: login.acme.example, authorization_server: aus1a2b3c4d5e6f7g8h9}",
            "client_credentials",
            "https://login.acme.example/oauth2/aus1a2b3c4d5e6f7g8h9/v1/token",
            "https://login.acme.example/oauth2/aus1a2b3c4d5e6f7g8h9/v1/authorize",
            "https://login.acme.example/oauth2/aus1a2b3c4d5e6f7g8h9/v1/revoke",
        ),
        (
            "{name: entra, tenant: contoso.onmicrosoft.com}",
            "client_credentials",
            "https://login.microsoftonline.com/contoso.onmicrosoft.com/oauth2/v2.0/token",
            "https://login.microsoftonline.com/contoso.onmicrosoft.com/oauth2/v2.0/authorize",
            None,
        ),
        (
            "{name: keycloak, base_url: 'https://sso.acme.example/', realm: staff}",  # the trailing / is dropped
            "client_credentials",
            "https://sso.acme.example/realms/staff/protocol/openid-connect/token",
            "https://sso.acme.example/realms/staff/protocol/openid-connect/auth",
            "https://sso.acme.example/realms/staff/protocol/openid-connect/revoke",
        ),
        (
            "{name: keycloak, base_url: 'https://old.acme.example/auth', realm: staff}",  # Keycloak before 17
            "client_credentials",
            "https://old.acme.example/auth/realms/staff/protocol/openid-connect/token",
            "https://old.acme.example/auth/realms/staff/protocol/openid-connect/auth",
            "https://old.acme.example/auth/realms/staff/protocol/openid-connect/revoke",
        ),
    ],
)
def test_preset_urls(preset: str, grant: str, token: str, authorize: str, revoke: str | None) -> None:
    auth = parse_config(route_with(preset), env={}).routes["api"].auth
    assert (auth.grant, auth.token_url, auth.authorize_url, auth.revocation_url) == (grant, token, authorize, revoke)
    assert auth.redirect_uri == "http://localhost:8765/callback"


def test_client_auth_and_audience_per_provider() -> None:
    def auth(preset: str) -> AuthConfig:
        return parse_config(route_with(preset), env={}).routes["api"].auth

    auth0 = auth("{name: auth0, domain: acme.eu.auth0.com, audience: 'https://orders.acme.example'}")
    assert (auth0.client_auth, auth0.audience) == ("client_secret_post", "https://orders.acme.example")
    assert auth("{name: okta, domain: dev-1.okta.com}").client_auth == "client_secret_basic"
    assert auth("{name: entra, tenant: common}").client_auth == "client_secret_post"
    assert auth("{name: keycloak, base_url: 'https://k.example', realm: r}").client_auth == "client_secret_basic"


def test_route_keys_win_over_the_preset_and_its_parameters() -> None:
    text = route_with(
        "{name: entra, tenant: 11111111-2222-3333-4444-555555555555}",
        "{grant: authorization_code, client_id: cid, client_auth: none, scope: 'openid offline_access api://x/.default'}",
    )
    auth = parse_config(text, env={}).routes["api"].auth
    assert auth.grant == "authorization_code" and auth.client_auth == "none"
    assert auth.token_url == (
        "https://login.microsoftonline.com/11111111-2222-3333-4444-555555555555/oauth2/v2.0/token"
    )
    assert parse_config(text, env={}).routes["api"].preset == "entra"


def test_google_service_account_preset() -> None:
    preset = load_preset("google-service-account")
    assert preset is not None and preset.params == {}
    assert preset.route == {
        "auth": {"grant": "jwt_bearer", "token_url": "https://oauth2.googleapis.com/token", "client_auth": "none"}
    }


LISTED = "domain (required), authorization_server (default default); `authproxy presets okta` describes them"


@pytest.mark.parametrize(
    ("preset", "message"),
    [
        (
            "okta",
            "the okta preset needs the parameter 'domain'; write preset: {name: okta, domain: dev-123456.okta.com} "
            f"(its parameters: {LISTED})",
        ),
        (
            "{name: okta, domain: dev-1.okta.com, server: x}",
            f"the okta preset has no parameter 'server'; its parameters: {LISTED}",
        ),
        (
            "{name: okta, domian: dev-1.okta.com}",
            f"the okta preset has no parameter 'domian'; did you mean 'domain'? its parameters: {LISTED}",
        ),
        (
            "{name: okta, domain: 'https://dev-1.okta.com'}",
            "the okta preset's parameter 'domain' must be a host name without scheme or path, e.g. "
            "dev-123456.okta.com; got 'https://dev-1.okta.com'",
        ),
        (
            "{name: entra, tenant: 'evil.example/x?'}",
            "the entra preset's parameter 'tenant' must be a name of letters, digits, '.', '_', '~' and '-', e.g. "
            "contoso.onmicrosoft.com; got 'evil.example/x?'",
        ),
        (
            "{name: keycloak, base_url: 'sso.example', realm: r}",
            "the keycloak preset's parameter 'base_url' must be an http(s) URL without query or fragment, e.g. "
            "https://sso.example.com; got 'sso.example'",
        ),
        (
            "{name: entra, tenant: [a, b]}",
            "the entra preset's parameter 'tenant' must be a name of letters, digits, '.', '_', '~' and '-'",
        ),
        ("{tenant: contoso}", "name the preset: preset: {name: entra, tenant: ...} (see `authproxy presets`)"),
    ],
)
def test_parameter_mistakes_name_the_preset_the_parameter_and_the_fix(preset: str, message: str) -> None:
    found = [m for p, m in problems(route_with(preset)) if p == "routes.api.preset"]
    assert message in found, found


def test_unknown_preset_in_the_mapping_form() -> None:
    assert problems(route_with("{name: entar, tenant: x}")) == [
        (
            "routes.api.preset",
            "unknown preset 'entar'; did you mean 'entra'? expected one of: " + ", ".join(sorted(preset_names())),
        )
    ]


@pytest.mark.parametrize("name", preset_names())
def test_every_placeholder_is_a_declared_parameter(name: str) -> None:
    text = resources.files("authproxy.config.presets").joinpath(f"{name}.yaml").read_text()
    data = yaml.safe_load(text)
    used = set(re.findall(r"\{([a-z_]+)\}", yaml.safe_dump(data.get("route"))))
    assert used == set(data.get("params") or {}), name


def test_the_readme_example_resolves() -> None:
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    section = readme.split("### Identity-provider presets", 1)[1].split("\n### ", 1)[0]
    block = section.split("```yaml\n", 1)[1].split("```", 1)[0]
    names = re.findall(r"\$\{([A-Z0-9_]+)\}", block)
    routes = parse_config(block, env=dict.fromkeys(names, "x")).routes
    assert {name: route.auth.token_url for name, route in routes.items()} == {
        "orders": "https://acme.eu.auth0.com/oauth/token",
        "billing": "https://dev-123456.okta.com/oauth2/default/v1/token",
        "graph": "https://login.microsoftonline.com/contoso.onmicrosoft.com/oauth2/v2.0/token",
        "inventory": "https://sso.acme.example/realms/staff/protocol/openid-connect/token",
    }
    assert routes["orders"].auth.audience == "https://orders.acme.example"


@pytest.mark.parametrize(
    ("preset", "message"),
    [
        (
            "{name: okta, domain: dev-1.okta.com}",
            "the okta preset needs it: Okta needs one of the authorization server's scopes, e.g. scope: orders.read",
        ),
        (
            "{name: entra, tenant: common}",
            "the entra preset needs it: Entra needs one, e.g. scope: https://graph.microsoft.com/.default "
            "(or api://APP-ID/.default)",
        ),
        (
            "google-service-account",
            "the google-service-account preset needs it: Google grants the scopes the assertion names, e.g. "
            "scope: https://www.googleapis.com/auth/cloud-platform",
        ),
    ],
)
def test_a_scope_the_provider_insists_on_is_required(preset: str, message: str) -> None:
    found = [m for p, m in problems(route_with(preset, "{client_id: cid, client_secret: s}")) if p.endswith(".scope")]
    assert found == [message]


@pytest.mark.parametrize(
    ("preset", "device"),
    [
        ("{name: auth0, domain: acme.eu.auth0.com, audience: x}", "https://acme.eu.auth0.com/oauth/device/code"),
        ("{name: okta, domain: dev-1.okta.com}", "https://dev-1.okta.com/oauth2/default/v1/device/authorize"),
        (
            "{name: entra, tenant: contoso.onmicrosoft.com}",
            "https://login.microsoftonline.com/contoso.onmicrosoft.com/oauth2/v2.0/devicecode",
        ),
        (
            "{name: keycloak, base_url: 'https://sso.acme.example', realm: staff}",
            "https://sso.acme.example/realms/staff/protocol/openid-connect/auth/device",
        ),
    ],
)
def test_preset_device_login_urls(preset: str, device: str) -> None:
    """Each IdP preset carries its RFC 8628 endpoint, so `login: device` needs no URL of its own."""
    flow = "{client_id: cid, client_secret: s, scope: x, grant: authorization_code, login: device}"
    auth = parse_config(route_with(preset, flow), env={}).routes["api"].auth
    assert (auth.login, auth.device_authorization_url) == ("device", device)
