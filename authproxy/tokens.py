"""The token value object shared by credentials, stores and the proxy."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Token:
    access_token: str
    expires_at: float | None  # epoch seconds; None: does not expire (static key)
    refresh_token: str | None = None
    token_type: str = "Bearer"
    obtained_at: float | None = None  # when the request that produced it was sent

    def __repr__(self) -> str:  # never let a token reach a log line through repr()
        refresh = "yes" if self.refresh_token else "no"
        return f"Token(type={self.token_type!r}, expires_at={self.expires_at!r}, refresh={refresh})"

    def expired(self, now: float) -> bool:
        return self.expires_at is not None and now >= self.expires_at

    @property
    def authorization(self) -> str:
        """The value of the Authorization header that carries this token."""
        return f"{self.token_type} {self.access_token}"
