"""Test doubles that are real: servers on 127.0.0.1 that record what they receive."""

from __future__ import annotations

import asyncio
import random
from typing import Any

from authproxy.config.schema import AuthConfig, ResponseMapping, RouteConfig
from tests.fakes.token_server import RecordedRequest, RefreshRotation, Reply, TokenServer


class FixedRandom(random.Random):
    """`random()` always returns `value`: jitter becomes a known constant in schedule tests."""

    def __init__(self, value: float = 0.0) -> None:
        super().__init__(0)
        self.value = value

    def random(self) -> float:
        return self.value


def make_route(name: str = "api", *, response: dict[str, str] | None = None, **auth: Any) -> RouteConfig:
    """A RouteConfig as the loader would build it (only the auth part matters here)."""
    if response is not None:
        auth["response"] = ResponseMapping(**response)
    return RouteConfig(name=name, prefix=f"/{name}", upstream="http://127.0.0.1:9", auth=AuthConfig(**auth))


async def settle(rounds: int = 50) -> None:
    """Let ready tasks run a few loop iterations (no time passes)."""
    for _ in range(rounds):
        await asyncio.sleep(0)


__all__ = ["FixedRandom", "RecordedRequest", "RefreshRotation", "Reply", "TokenServer", "make_route", "settle"]
