"""A fake identity provider on a real `TokenServer` (127.0.0.1, ephemeral port), answering by path.

Metadata documents (OIDC Discovery, RFC 8414) at the paths a test puts in `documents`, an RFC 8628
device authorization endpoint at /device and a token endpoint at /token whose answers a test scripts
in `tokens` (then: a token with a refresh token). Every request is in `server.requests`.
"""

from __future__ import annotations

from typing import Any

from tests.fakes.token_server import RecordedRequest, Reply, TokenServer

OIDC = "/.well-known/openid-configuration"


class FakeIdp:
    def __init__(self, server: TokenServer, *, issuer_path: str = "") -> None:
        self.server = server
        self.issuer_path = issuer_path
        self.documents: dict[str, Reply] = {}
        self.device: Reply | None = None
        self.tokens: list[Reply] = []
        self.issued = 0
        server.default = self

    @property
    def issuer(self) -> str:
        return self.server.base_url + self.issuer_path

    def document(self, **overrides: Any) -> dict[str, Any]:
        """A complete metadata document for this issuer; `key=None` drops a key."""
        base = self.server.base_url
        doc: dict[str, Any] = {
            "issuer": self.issuer,
            "authorization_endpoint": f"{base}/authorize",
            "token_endpoint": f"{base}/token",
            "revocation_endpoint": f"{base}/revoke",
            "device_authorization_endpoint": f"{base}/device",
            "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
            "code_challenge_methods_supported": ["S256"],
        }
        doc.update(overrides)
        return {key: value for key, value in doc.items() if value is not None}

    def serve_oidc(self, **overrides: Any) -> None:
        self.documents[self.issuer_path + OIDC] = Reply(json=self.document(**overrides))

    def device_reply(self, **overrides: Any) -> Reply:
        data = {
            "device_code": "SENTINEL-device-code",
            "user_code": "WDJB-MJHT",
            "verification_uri": f"{self.server.base_url}/activate",
            "verification_uri_complete": f"{self.server.base_url}/activate?user_code=WDJB-MJHT&x=1",
            "expires_in": 600,
            "interval": 5,
        }
        data.update(overrides)
        return Reply(json={k: v for k, v in data.items() if v is not None})

    def requests_to(self, path: str) -> list[RecordedRequest]:
        return [r for r in self.server.requests if r.path == path]

    def __call__(self, request: RecordedRequest) -> Reply:
        if request.path in self.documents:
            return self.documents[request.path]
        if request.path == "/device":
            return self.device or self.device_reply()
        if request.path == "/token":
            if self.tokens:
                return self.tokens.pop(0)
            self.issued += 1
            return Reply.token(f"at-{self.issued}", 3600, refresh_token=f"SENTINEL-rt-{self.issued}")
        return Reply(status=404, json={"detail": "not found"})
