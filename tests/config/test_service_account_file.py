"""`auth.service_account_file`: a Google-style JSON key read into the route, and every way it can be wrong."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from authproxy.config.load import load_config
from authproxy.config.masking import masked, secret_values
from authproxy.errors import ConfigError
from tests.fakes.assertion_grant import pem, service_account_key

WHERE = "routes.gcs.auth.service_account_file"
FIX = "download a new JSON key (Google Cloud console: IAM > Service accounts > Keys > Add key > JSON)"


@pytest.fixture(scope="module")
def key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def config(tmp_path: Path, key_file: str = "sa.json", auth: str = "", preset: str = "google-service-account") -> Path:
    file = tmp_path / "authproxy.yaml"
    file.write_text(
        f"routes:\n  gcs:\n    preset: {preset}\n    upstream: https://storage.googleapis.com\n"
        f"    auth: {{service_account_file: {key_file}, scope: 'https://www.googleapis.com/auth/cloud-platform'"
        f"{auth}}}\n"
    )
    return file


def problems(path: Path) -> list[tuple[str, str]]:
    with pytest.raises(ConfigError) as info:
        load_config(path, env={})
    return info.value.problems


def test_the_key_fills_issuer_key_id_audience_and_the_private_key(tmp_path, key) -> None:
    (tmp_path / "sa.json").write_text(json.dumps(service_account_key(key, "https://oauth2.googleapis.com/token")))
    cfg = load_config(config(tmp_path), env={})  # relative to the config file's directory
    auth = cfg.routes["gcs"].auth
    assert auth.grant == "jwt_bearer" and auth.client_auth == "none"
    assert auth.assertion_issuer == "reporter@demo-project.iam.gserviceaccount.com"
    assert auth.key_id == "0123456789abcdef0123456789abcdef01234567"
    assert (auth.token_url, auth.assertion_audience) == ("https://oauth2.googleapis.com/token",) * 2
    assert auth.private_key == pem(key)
    assert pem(key) in secret_values(cfg)  # the log redactor knows it
    assert masked(cfg)["routes"]["gcs"]["auth"]["private_key"] == "********"


def test_token_uri_is_the_token_url_unless_one_is_given(tmp_path, key) -> None:
    data = service_account_key(key, "https://oauth2.example.test/token")
    (tmp_path / "sa.json").write_text(json.dumps(data))
    auth = load_config(config(tmp_path, preset="null", auth=", grant: jwt_bearer, client_auth: none"), env={})
    assert (auth.routes["gcs"].auth.token_url, auth.routes["gcs"].auth.assertion_audience) == (
        "https://oauth2.example.test/token",
        "https://oauth2.example.test/token",
    )


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", f"sa.json is not a JSON service-account key; {FIX}"),
        ("[1, 2]", f"sa.json is not a JSON service-account key (not a JSON object); {FIX}"),
        (
            json.dumps({"type": "external_account", "audience": "x"}),
            "sa.json is a 'external_account' credential, not a service-account key (type service_account)",
        ),
    ],
)
def test_a_file_that_is_not_a_key(tmp_path, content: str, message: str) -> None:
    (tmp_path / "sa.json").write_text(content)
    assert problems(config(tmp_path)) == [(WHERE, message)]


@pytest.mark.parametrize("field", ["client_email", "private_key", "private_key_id", "token_uri"])
def test_a_missing_field_is_named(tmp_path, key, field: str) -> None:
    (tmp_path / "sa.json").write_text(json.dumps(service_account_key(key, "https://t.example/token", **{field: None})))
    message = (
        f"sa.json has no {field} (a service-account key has all of client_email, private_key, private_key_id, "
        f"token_uri); {FIX}"
    )
    assert problems(config(tmp_path)) == [(WHERE, message)]


def test_a_key_that_does_not_parse_is_named_and_never_shown(tmp_path, key) -> None:
    body = pem(key).splitlines()
    broken = "\n".join([body[0], "SENTINEL" + body[1][8:], *body[2:]])
    (tmp_path / "sa.json").write_text(
        json.dumps(service_account_key(key, "https://t.example/token", private_key=broken))
    )
    [(where, message)] = problems(config(tmp_path))
    assert where == WHERE
    assert message.startswith("the private_key field of sa.json does not parse as an unencrypted PEM private key (")
    assert "SENTINEL" not in message and body[2] not in message
    (tmp_path / "sa.json").write_text(
        json.dumps(service_account_key(key, "https://t.example/token", private_key="SENTINEL"))
    )
    assert problems(config(tmp_path)) == [(WHERE, f"the private_key field of sa.json is not a PEM private key; {FIX}")]


def test_an_unreadable_file(tmp_path) -> None:
    [(where, message)] = problems(config(tmp_path, key_file="absent.json"))
    assert (where, message) == (
        WHERE,
        "cannot read absent.json: No such file or directory; check the path and permissions",
    )


def test_the_wrong_grant_or_a_second_key(tmp_path, key) -> None:
    (tmp_path / "sa.json").write_text(json.dumps(service_account_key(key, "https://t.example/token")))
    found = problems(config(tmp_path, preset="null", auth=", grant: client_credentials, client_auth: none"))
    assert (WHERE, "only grant jwt_bearer uses it; set grant: jwt_bearer (or preset: google-service-account)") in found
    found = problems(config(tmp_path, auth=", private_key: inline"))
    assert found == [(WHERE, "give either private_key (or private_key_file) or service_account_file, not both")]


def test_jwt_bearer_without_a_key_or_an_issuer(tmp_path) -> None:
    file = tmp_path / "c.yaml"
    file.write_text(
        "routes:\n  api:\n    upstream: https://api.example.com\n"
        "    auth: {grant: jwt_bearer, token_url: 'https://as.example/token', client_auth: none}\n"
    )
    assert problems(file) == [
        (
            "routes.api.auth.private_key",
            "grant jwt_bearer signs with a private key: set private_key_file to a PEM file, "
            "or service_account_file to a service-account JSON key",
        ),
        (
            "routes.api.auth.assertion_issuer",
            "grant jwt_bearer needs an issuer (iss): set assertion_issuer or client_id",
        ),
    ]


def test_token_exchange_needs_a_readable_subject_token_file(tmp_path) -> None:
    file = tmp_path / "c.yaml"
    base = "routes:\n  api:\n    upstream: https://api.example.com\n    auth: {grant: token_exchange, client_auth: none"
    file.write_text(base + "}\n")
    assert problems(file) == [
        (
            "routes.api.auth.token_url",
            "required for grant token_exchange (or set routes.api.auth.issuer to discover it)",
        ),
        ("routes.api.auth.subject_token_file", "required for grant token_exchange"),
    ]
    file.write_text(base + ", token_url: 'https://as.example/t', subject_token_file: /nonexistent/token}\n")
    assert problems(file) == [
        (
            "routes.api.auth.subject_token_file",
            "cannot read /nonexistent/token: No such file or directory; check the path and permissions",
        )
    ]
    (tmp_path / "token").write_text("t")
    file.write_text(base + ", token_url: 'https://as.example/t', subject_token_file: token}\n")
    assert load_config(file, env={}).routes["api"].auth.subject_token_file == str(tmp_path / "token")
