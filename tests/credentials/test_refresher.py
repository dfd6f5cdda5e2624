"""Background renewal: when it renews, how it backs off, when it stops. Time is a FakeClock."""

from __future__ import annotations

import itertools
import random
from collections.abc import AsyncIterator

import pytest
from structlog.testing import capture_logs

from authproxy.credentials.build import build_credential
from authproxy.credentials.credential import Credential
from authproxy.credentials.refresher import Backoff, leeway, renewal_at
from authproxy.credentials.tokens import Token
from authproxy.errors import CredentialFailed, TokenUnavailable
from authproxy.stores.memory import MemoryStore
from tests.fakes import FixedRandom, Reply, make_route, settle
from tests.fakes.clock import FakeClock


@pytest.fixture
async def make(transport, clock, server) -> AsyncIterator:
    made: list[Credential] = []

    def factory(*, rng: random.Random | None = None, store: object = None, **auth: object) -> Credential:
        route = make_route(
            "api", grant="client_credentials", token_url=server.url, client_id="c", client_secret="s", **auth
        )
        cred = build_credential(
            route, transport=transport, store=store or MemoryStore(), clock=clock, rng=rng or FixedRandom(0.0)
        )
        made.append(cred)
        return cred

    yield factory
    for cred in made:
        await cred.close()


async def until_idle(cred: Credential, clock: FakeClock) -> None:
    """Let the refresher finish its fetch and go back to sleep on the clock."""
    for _ in range(20):
        await settle()
        await cred.wait_idle()
        parked = cred.next_attempt_in() is None  # waits for a wakeup, not on the clock
        if (clock.sleepers or parked) and cred.status()["state"] != "renewing":
            return
    pytest.fail("refresher did not go back to sleep")


# -- the arithmetic ------------------------------------------------------------------------------------


def test_leeway_is_a_tenth_at_least_min_but_at_most_half() -> None:
    assert leeway(3600, 60) == 360
    assert leeway(300, 60) == 60
    assert leeway(6, 60) == 3
    assert leeway(43200, 60) == 4320


def test_renewal_point_and_jitter() -> None:
    token = Token("a", expires_at=1000.0 + 3600, obtained_at=1000.0)
    assert renewal_at(token, 1000.0, 60) == 1000.0 + 3600 - 360
    assert renewal_at(token, 1000.0, 60, FixedRandom(0.5)) == 1000.0 + 3600 - 342  # up to 10 % later
    assert renewal_at(Token("s", expires_at=None), 0.0, 60) is None


def test_backoff_doubles_from_one_second_and_caps_at_five_minutes() -> None:
    backoff = Backoff()
    assert [backoff.delay(n, FixedRandom(0.0)) for n in range(1, 13)] == [
        1,
        2,
        4,
        8,
        16,
        32,
        64,
        128,
        256,
        300,
        300,
        300,
    ]
    assert backoff.delay(3, FixedRandom(1.0)) == pytest.approx(3.2)
    rng = random.Random(7)
    for n in range(1, 40):
        assert 0.8 * backoff.base(n) <= backoff.delay(n, rng) <= backoff.base(n) <= 300
    assert backoff.base(10_000) == 300


# -- the task ------------------------------------------------------------------------------------------


async def test_renews_before_expiry(server, make, clock) -> None:
    cred = make()
    cred.start()
    cred.start()  # idempotent
    await server.wait_for_requests(1)
    await until_idle(cred, clock)
    assert cred.status()["state"] == "valid"
    await clock.advance(3600 - 360 - 0.1)
    await settle()
    assert len(server.requests) == 1
    await clock.advance(0.2)
    await server.wait_for_requests(2)
    await until_idle(cred, clock)
    assert (await cred.current()).access_token == "at-2"
    assert server.requests[1].at == pytest.approx(3240.0)
    assert len(server.requests) == 2


async def test_six_second_token_renews_at_three_seconds(server, make, clock) -> None:
    server.expires_in = 6
    cred = make()
    cred.start()
    await server.wait_for_requests(1)
    for n in range(2, 5):  # steadily every 3 s, never continuously
        await until_idle(cred, clock)
        await clock.advance(2.9)
        await settle()
        assert len(server.requests) == n - 1
        await clock.advance(0.1)
        await server.wait_for_requests(n)
    assert [r.at for r in server.requests] == pytest.approx([0.0, 3.0, 6.0, 9.0])


async def test_failures_back_off_1_2_4_up_to_300(server, make, clock) -> None:
    server.default = lambda _req: Reply.html(502)
    cred = make()
    with capture_logs() as logs:
        cred.start()
        await server.wait_for_requests(1)
        expected = [1, 2, 4, 8, 16, 32, 64, 128, 256, 300, 300]
        for n, delay in enumerate(expected, start=2):
            await until_idle(cred, clock)
            assert cred.status()["retry_in"] == pytest.approx(delay)
            await clock.advance(delay)
            await server.wait_for_requests(n)
    at = [r.at for r in server.requests]
    assert [b - a for a, b in itertools.pairwise(at)] == pytest.approx(expected)
    failed = [e for e in logs if e["event"] == "token_fetch_failed"]
    assert failed[0]["outcome"] == "transient_error" and failed[0]["retry_in"] == 1.0


async def test_jittered_backoff_stays_within_bounds(server, make, clock) -> None:
    server.default = lambda _req: Reply.html(502)
    cred = make(rng=random.Random(1234))
    cred.start()
    await server.wait_for_requests(1)
    for n in range(2, 8):
        await until_idle(cred, clock)
        await clock.advance(cred.status()["retry_in"])
        await server.wait_for_requests(n)
    at = [r.at for r in server.requests]
    for n, (a, b) in enumerate(itertools.pairwise(at), start=1):
        assert 0.8 * Backoff().base(n) - 1e-9 <= b - a <= Backoff().base(n) + 1e-9


async def test_valid_token_is_served_during_failures_then_never_once_expired(server, make, clock) -> None:
    server.expires_in = 100  # leeway capped at half the lifetime: renew at 50 s
    cred = make()
    cred.start()
    await server.wait_for_requests(1)
    await until_idle(cred, clock)
    server.default = lambda _req: Reply.error("server_error", status=500)
    await clock.advance(50)
    await server.wait_for_requests(2)
    await until_idle(cred, clock)
    assert (await cred.current()).access_token == "at-1"
    assert (cred.status()["state"], cred.status()["valid"]) == ("backing_off", True)
    for n, delay in enumerate([1, 2, 4, 8, 16], start=3):
        await clock.advance(delay)
        await server.wait_for_requests(n)
        await until_idle(cred, clock)
        assert (await cred.current()).access_token == "at-1"
    assert clock.monotonic() == 81
    await clock.advance(19)  # the token has now expired, mid-backoff (next try at 81 + 32)
    assert len(server.requests) == 7
    with pytest.raises(TokenUnavailable) as err:
        await cred.current()
    assert err.value.retry_after == pytest.approx(13)
    assert (cred.status()["state"], cred.status()["valid"]) == ("backing_off", False)


async def test_permanent_failure_stops_the_loop_until_an_explicit_refresh(server, make, clock) -> None:
    server.expires_in = 100
    cred = make()
    cred.start()
    await server.wait_for_requests(1)
    await until_idle(cred, clock)
    server.default = lambda _req: Reply.error("invalid_client", status=401)
    await clock.advance(50)
    await server.wait_for_requests(2)
    await until_idle(cred, clock)
    assert cred.status()["state"] == "failed"
    assert (await cred.current()).access_token == "at-1"  # still valid: still served
    await clock.advance(10_000)
    await settle()
    assert len(server.requests) == 2  # no retry loop while failed
    server.default = server.issue  # the operator fixed the client; a new login / reload calls refresh()
    assert (await cred.refresh()).access_token == "at-2"
    assert cred.status()["state"] == "valid"
    await until_idle(cred, clock)
    await clock.advance(50)
    await server.wait_for_requests(4)  # background renewal resumed


async def test_failed_startup_fetch_crashes_nothing_and_requests_retry_lazily(server, make, clock) -> None:
    server.script.append(Reply.html(502))
    cred = make()
    cred.start()
    await server.wait_for_requests(1)
    await until_idle(cred, clock)
    assert (cred.status()["state"], cred.status()["valid"]) == ("backing_off", False)
    with pytest.raises(TokenUnavailable):
        await cred.current()
    await clock.advance(1)
    await server.wait_for_requests(2)
    await until_idle(cred, clock)
    assert (await cred.current()).access_token == "at-1"
    assert len(server.requests) == 2


async def test_startup_failure_with_invalid_client_parks_without_retrying(server, make, clock) -> None:
    server.default = lambda _req: Reply.error("invalid_client", status=401)
    cred = make()
    cred.start()
    await server.wait_for_requests(1)
    await settle()
    await cred.wait_idle()
    await clock.advance(3600)
    await settle()
    assert len(server.requests) == 1
    with pytest.raises(CredentialFailed):
        await cred.current()  # cool-down passed: this one request retries, once
    assert len(server.requests) == 2


class BrokenStore(MemoryStore):
    """A store with a bug (not an I/O error): the refresher must survive it."""

    async def load(self, key: str) -> Token | None:
        raise RuntimeError("bug")


async def test_unexpected_errors_are_logged_and_the_loop_survives(server, make, clock) -> None:
    cred = make(store=BrokenStore())
    with capture_logs() as logs:
        cred.start()
        for _ in range(5):
            await settle()
        assert [e["event"] for e in logs].count("refresher_error") == 1
        await clock.advance(5)
        await settle()
        assert [e["event"] for e in logs].count("refresher_error") == 2
    assert server.requests == []


async def test_close_cancels_the_task(server, make, clock) -> None:
    cred = make()
    cred.start()
    await server.wait_for_requests(1)
    await until_idle(cred, clock)
    await cred.close()
    await clock.advance(10_000)
    await settle()
    assert len(server.requests) == 1
    status = cred.status()  # nothing renewed it after close(): the last state stays, the token is no longer valid
    assert (status["state"], status["valid"], status["expires_in"]) == ("valid", False, 0)
