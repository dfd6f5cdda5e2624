"""Grant `jwt_bearer` (RFC 7523 §2.1): a signed assertion buys the token, e.g. a Google service account.

Each fetch signs a new assertion (fresh `jti`, `iat` from the clock, `exp` an hour later), so
a renewal never presents an expired or already used one. The scopes ride in the assertion's
`scope` claim (where Google reads them) rather than in the request body.
"""

from __future__ import annotations

from authproxy.credentials.assertion import AssertionSigner
from authproxy.credentials.endpoint import TokenEndpoint
from authproxy.credentials.tokens import Token

GRANT_TYPE = "urn:ietf:params:oauth:grant-type:jwt-bearer"


class JwtBearerSource:
    persist = True

    def __init__(self, endpoint: TokenEndpoint, signer: AssertionSigner) -> None:
        self._endpoint = endpoint
        self._signer = signer

    async def fetch(self, previous: Token | None) -> Token:
        assertion = self._signer.sign(self._endpoint.clock)
        return await self._endpoint.request(GRANT_TYPE, {"assertion": assertion}, send_scope=False)

    def refresh_token_for(self, previous: Token | None) -> str | None:
        return None

    def relogin_hint(self) -> str | None:
        return None
