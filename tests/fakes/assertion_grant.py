"""The server side of RFC 7523 §3 for `grant: jwt_bearer`, as a TokenServer handler (a real endpoint).

It checks what a strict authorization server (Google's) checks: the signature with the public key,
`iss`, `sub`, `aud`, `scope`, `exp - iat <= 3600`, not expired on the server's clock, and each
`jti` used once. Every refusal is an OAuth `invalid_grant` and is also kept in `refusals`.

    server.default = AssertionGrant(server, key.public_key(), issuer="svc@x", audience=server.url)
"""

from __future__ import annotations

from typing import Any

import jwt

from tests.fakes.token_server import RecordedRequest, Reply, TokenServer

GRANT_TYPE = "urn:ietf:params:oauth:grant-type:jwt-bearer"


class AssertionGrant:
    def __init__(
        self,
        server: TokenServer,
        public_key: Any,
        *,
        issuer: str,
        audience: str,
        subject: str | None = None,
        scope: str | None = None,
        algorithm: str = "RS256",
        key_id: str | None = None,
    ) -> None:
        assert server.clock is not None, "the server checks exp on the test's clock"
        self.server = server
        self.public_key = public_key
        self.expected = {"iss": issuer, "sub": subject or issuer, "aud": audience, "scope": scope}
        self.algorithm = algorithm
        self.key_id = key_id
        self.seen_jti: set[str] = set()
        self.accepted: list[dict[str, Any]] = []  # the claims of each accepted assertion
        self.refusals: list[str] = []

    def __call__(self, request: RecordedRequest) -> Reply:
        problem = self.check(request.params)
        if problem is not None:
            self.refusals.append(problem)
            return Reply.error("invalid_grant", problem)
        return self.server.issue(request)

    def check(self, params: dict[str, Any]) -> str | None:
        if params.get("grant_type") != GRANT_TYPE:
            return f"grant_type is {params.get('grant_type')!r}"
        assertion = params.get("assertion", "")
        try:
            header = jwt.get_unverified_header(assertion)
            claims = jwt.decode(
                assertion,
                self.public_key,
                algorithms=[self.algorithm],
                audience=self.expected["aud"],
                options={"verify_exp": False, "verify_iat": False, "require": ["exp", "iat", "jti"]},
            )  # exp and iat are checked below, on the server's (fake) clock
        except jwt.InvalidTokenError as exc:
            return f"bad assertion: {type(exc).__name__}"
        for claim in ("iss", "sub", "scope"):
            if claims.get(claim) != self.expected[claim]:
                return f"{claim} is {claims.get(claim)!r}"
        if self.key_id is not None and header.get("kid") != self.key_id:
            return f"kid is {header.get('kid')!r}"
        now = self.server.clock.now()  # type: ignore[union-attr]
        if not 0 < claims["exp"] - claims["iat"] <= 3600:
            return "exp must be at most an hour after iat"
        if claims["exp"] <= now or claims["iat"] > now + 60:
            return "assertion expired (or issued in the future)"
        if claims["jti"] in self.seen_jti:
            return "assertion replayed (jti seen before)"
        self.seen_jti.add(claims["jti"])
        self.accepted.append({"header": header, **claims})
        return None


def pem(key: Any) -> str:
    """A private key as unencrypted PKCS#8 PEM text."""
    from cryptography.hazmat.primitives import serialization

    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


def service_account_key(key: Any, uri: str, **overrides: Any) -> dict[str, Any]:
    """A Google-style service-account JSON key for `key` (fields as the Cloud console writes them)."""
    data: dict[str, Any] = {
        "type": "service_account",
        "project_id": "demo-project",
        "private_key_id": "0123456789abcdef0123456789abcdef01234567",
        "private_key": pem(key),
        "client_email": "reporter@demo-project.iam.gserviceaccount.com",
        "client_id": "112233445566778899000",
        "auth_uri": "https://accounts.google.com/o/oauth2/auth",
        "token_uri": uri,
    }
    data.update(overrides)
    return {k: v for k, v in data.items() if v is not None}
