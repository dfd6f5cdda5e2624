"""The files a service-account route names: a Google-style JSON key, and RFC 8693 token files.

The JSON key is read once, when the config is loaded, into the ordinary auth keys (`private_key`,
`key_id`, `assertion_issuer`, `assertion_audience`, `token_url`), so the private key is a config
secret like any other (masked, redacted from logs) and a bad file is a config error naming the file
and the field. Token files (`subject_token_file`, `actor_token_file`) are only checked here: the
grant reads them again for every exchange, since a Kubernetes projected token rotates.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from authproxy.config.checks import Problems
from authproxy.config.schema import AuthConfig

SERVICE_ACCOUNT_FIELDS = ("client_email", "private_key", "private_key_id", "token_uri")
_FIX = "download a new JSON key (Google Cloud console: IAM > Service accounts > Keys > Add key > JSON)"


def resolve(name: str, base_dir: Path) -> Path:
    """`name` as the config means it: `~` expanded, relative to the config file's directory."""
    file = Path(name).expanduser()
    return file if file.is_absolute() else base_dir / file


def read_auth_files(auth: AuthConfig, path: str, problems: Problems, base_dir: Path) -> AuthConfig:
    """`auth` with the service-account key applied and token file names made absolute."""
    changes: dict[str, Any] = {}
    for key in ("subject_token_file", "actor_token_file"):
        name = getattr(auth, key)
        if name is not None:
            file = _readable(name, f"{path}.{key}", problems, base_dir, "a token")
            if file is not None:
                changes[key] = str(file)
            if auth.grant != "token_exchange":
                problems.add(f"{path}.{key}", "only grant token_exchange reads it; set grant: token_exchange")
    if auth.service_account_file is not None:
        changes.update(_service_account(auth, path, problems, base_dir))
    return dataclasses.replace(auth, **changes) if changes else auth


def _readable(name: str, path: str, problems: Problems, base_dir: Path, holding: str) -> Path | None:
    try:
        file = resolve(name, base_dir)
        file.read_bytes()
    except OSError as exc:
        problems.add(path, f"cannot read {name}: {exc.strerror or exc}; check the path and permissions")
        return None
    except (ValueError, RuntimeError) as exc:  # NUL in the name, ~unknown-user
        problems.add(path, f"cannot use {name!r} as a file name ({exc}); give the path of the file holding {holding}")
        return None
    return file


def _service_account(auth: AuthConfig, path: str, problems: Problems, base_dir: Path) -> dict[str, Any]:
    where, name = f"{path}.service_account_file", auth.service_account_file or ""
    if auth.grant != "jwt_bearer":
        problems.add(where, "only grant jwt_bearer uses it; set grant: jwt_bearer (or preset: google-service-account)")
    if auth.private_key is not None:
        problems.add(where, "give either private_key (or private_key_file) or service_account_file, not both")
        return {}
    file = _readable(name, where, problems, base_dir, "the JSON key")
    if file is None:
        return {}
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError, RecursionError):  # never echo the content: it holds the key
        problems.add(where, f"{name} is not a JSON service-account key; {_FIX}")
        return {}
    if not isinstance(data, dict):
        problems.add(where, f"{name} is not a JSON service-account key (not a JSON object); {_FIX}")
        return {}
    if data.get("type", "service_account") != "service_account":
        problems.add(
            where, f"{name} is a {data.get('type')!r} credential, not a service-account key (type service_account)"
        )
        return {}
    missing = [f for f in SERVICE_ACCOUNT_FIELDS if not isinstance(data.get(f), str) or not data[f]]
    if missing:
        problems.add(
            where,
            f"{name} has no {', '.join(missing)} (a service-account key has all of "
            f"{', '.join(SERVICE_ACCOUNT_FIELDS)}); {_FIX}",
        )
        return {}
    problem = _key_problem(data["private_key"])
    if problem:
        problems.add(where, f"the private_key field of {name} {problem}; {_FIX}")
        return {}
    return {
        "private_key": data["private_key"],
        "key_id": auth.key_id or data["private_key_id"],
        "assertion_issuer": auth.assertion_issuer or data["client_email"],
        "assertion_audience": auth.assertion_audience or data["token_uri"],
        "token_url": auth.token_url or data["token_uri"],
    }


def _key_problem(pem: str) -> str | None:
    """Why the key cannot sign, or None; checked now when cryptography is installed (the jwt extra)."""
    if "-----BEGIN" not in pem:
        return "is not a PEM private key"
    try:
        from cryptography.hazmat.primitives import serialization  # optional: the jwt extra
    except ImportError:  # the credential build says to install the extra
        return None
    try:
        serialization.load_pem_private_key(pem.encode(), password=None)
    except (ValueError, TypeError) as exc:  # never echo the key
        return f"does not parse as an unencrypted PEM private key ({type(exc).__name__})"
    return None
