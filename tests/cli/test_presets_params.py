"""`authproxy presets` documents preset parameters; `authproxy check` reports a service-account key's mistakes."""

from __future__ import annotations

import json

from cryptography.hazmat.primitives.asymmetric import rsa

from tests.cli.test_main import run_cli, write
from tests.fakes.assertion_grant import pem, service_account_key


async def test_presets_lists_the_identity_providers_and_documents_parameters() -> None:
    code, out, _ = await run_cli("presets")
    assert code == 0
    for name in ("auth0", "okta", "entra", "keycloak", "google-service-account"):
        assert f"\n{name} " in "\n" + out, name
    code, out, _ = await run_cli("presets", "entra")
    assert code == 0
    assert "# parameters, given as preset: {name: entra, tenant: contoso.onmicrosoft.com}\n" in out
    assert "#   tenant (required): the directory (tenant) id or a verified domain;" in out
    assert "token_url: https://login.microsoftonline.com/{tenant}/oauth2/v2.0/token\n" in out
    code, out, _ = await run_cli("presets", "okta")
    assert "#   authorization_server (default default): the custom authorization server's id" in out
    assert "# routes using it must set auth.scope: Okta needs one of the authorization server's scopes" in out


async def test_check_names_the_service_account_key_problem_without_the_key(tmp_path) -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    data = service_account_key(key, "https://oauth2.googleapis.com/token", client_email=None)
    (tmp_path / "sa.json").write_text(json.dumps(data))
    text = (
        "routes:\n  gcs:\n    preset: google-service-account\n    upstream: https://storage.googleapis.com\n"
        f"    auth: {{service_account_file: {tmp_path / 'sa.json'}, scope: x}}\n"
    )
    code, out, err = await run_cli("check", "-c", write(tmp_path, text))
    assert code == 2
    assert "routes.gcs.auth.service_account_file" in err and "has no client_email" in err
    assert pem(key).splitlines()[1] not in out + err
