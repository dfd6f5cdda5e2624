"""Fixtures for the transport tests: every test that takes `pool` or `make_transport` runs against both transports.

(Each test module has its own `server` fixture: the root conftest's `server` is the token server.)"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from authproxy.upstream.transport import Transport
from tests.upstream.raw_server import TRANSPORTS


@pytest.fixture(params=list(TRANSPORTS))
async def make_transport(request: pytest.FixtureRequest) -> AsyncIterator[Callable[..., Transport]]:
    """Transports of the kind under test (both, by parametrisation); all closed after the test."""
    made: list[Transport] = []

    def factory(**kwargs: Any) -> Transport:
        made.append(TRANSPORTS[request.param](**kwargs))
        return made[-1]

    yield factory
    for transport in made:
        await transport.close()


@pytest.fixture
def pool(make_transport: Callable[..., Transport]) -> Transport:
    """No rest between exchanges: these tests are about one exchange at a time, and reuse them at once
    (the rest before reuse has tests of its own, on a fake clock)."""
    return make_transport(limit=8, rest=0.0)
