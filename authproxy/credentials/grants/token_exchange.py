"""Grant `token_exchange` (RFC 8693): trade a token we hold (a workload's identity) for one the upstream takes.

The subject token (and an actor token, if any) is read from its file for every exchange: a
Kubernetes projected service-account token is rewritten in place before it expires, so a copy
read at start would go stale. A file that cannot be read is a transient failure (retried with
backoff), since the kubelet may be rewriting it; its content never appears in a message.
"""

from __future__ import annotations

from pathlib import Path

from authproxy.config.schema import AuthConfig
from authproxy.credentials.endpoint import TokenEndpoint
from authproxy.credentials.tokens import Token
from authproxy.errors import TokenEndpointError

GRANT_TYPE = "urn:ietf:params:oauth:grant-type:token-exchange"


class TokenExchangeSource:
    persist = True

    def __init__(self, endpoint: TokenEndpoint, auth: AuthConfig, where: str) -> None:
        self._endpoint = endpoint
        self._auth = auth
        self._where = where

    async def fetch(self, previous: Token | None) -> Token:
        auth = self._auth
        assert auth.subject_token_file is not None  # the loader requires it for this grant
        params = {
            "subject_token": self._read("subject_token_file", auth.subject_token_file),
            "subject_token_type": auth.subject_token_type,
        }
        if auth.actor_token_file:
            params["actor_token"] = self._read("actor_token_file", auth.actor_token_file)
            params["actor_token_type"] = auth.actor_token_type
        if auth.resource:
            params["resource"] = auth.resource
        if auth.requested_token_type:
            params["requested_token_type"] = auth.requested_token_type
        return await self._endpoint.request(GRANT_TYPE, params)  # audience and scope: as for every grant

    def _read(self, key: str, name: str) -> str:
        """The token in the file now (a few hundred bytes on a tmpfs: read inline, not in a thread)."""
        try:
            token = Path(name).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise TokenEndpointError(
                f"cannot read {self._where}.{key} {name}: {exc.strerror or exc}; check that the file is mounted",
                code="token_file_unreadable",
            ) from None
        except UnicodeDecodeError:
            raise TokenEndpointError(
                f"{self._where}.{key} {name} is not UTF-8 text; it should hold a token", code="token_file_unreadable"
            ) from None
        if not token:
            raise TokenEndpointError(
                f"{self._where}.{key} {name} is empty; it should hold a token", code="token_file_empty"
            )
        return token

    def refresh_token_for(self, previous: Token | None) -> str | None:
        return None

    def relogin_hint(self) -> str | None:
        return None
