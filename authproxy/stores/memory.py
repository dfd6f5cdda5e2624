"""The in-process store: tokens survive a config reload but not a restart."""

from __future__ import annotations

from authproxy.credentials.tokens import Token
from authproxy.stores.base import TokenStore


class MemoryStore(TokenStore):
    """A dict of tokens; the base's per-key lock is enough within one process."""

    kind = "memory"

    def __init__(self) -> None:
        super().__init__()
        self._tokens: dict[str, Token] = {}

    async def load(self, key: str) -> Token | None:
        return self._tokens.get(key)

    async def save(self, key: str, token: Token) -> None:
        self._tokens[key] = token

    async def delete(self, key: str) -> None:
        self._tokens.pop(key, None)

    def keys(self) -> list[str]:
        """Stored keys (for tests and `/-/status`; never the tokens)."""
        return sorted(self._tokens)
