"""The credential's states as a table: the allowed transitions, and a real scenario for each of them.

Each scenario drives a real credential against the fake token server (real sockets, fake clock) and
records the transitions it makes; together the scenarios must cover every allowed transition.
"""

from __future__ import annotations

import itertools
from collections.abc import Awaitable, Callable

import pytest

from authproxy.credentials.credential import Credential
from authproxy.credentials.identity import store_key
from authproxy.credentials.state import TRANSITIONS, IllegalTransition, State, StateMachine
from authproxy.credentials.tokens import Token
from authproxy.errors import CredentialFailed, LoginRequired, TokenUnavailable
from tests.fakes import Reply, TokenServer
from tests.fakes.clock import FakeClock

Transition = tuple[State, State]
E, V, R, B, L, F, N = (
    State.EMPTY,
    State.VALID,
    State.RENEWING,
    State.BACKING_OFF,
    State.LOGIN_REQUIRED,
    State.FAILED,
    State.NOT_CONFIGURED,
)


@pytest.mark.parametrize(("start", "to"), list(itertools.product(State, State)))
def test_the_machine_allows_exactly_the_table(start: State, to: State, clock: FakeClock) -> None:
    machine = StateMachine(clock, start)
    if to is start or to in TRANSITIONS[start]:
        machine.move(to)
        assert machine.state is to
    else:
        with pytest.raises(IllegalTransition):
            machine.move(to)
        assert machine.state is start


def test_not_configured_is_terminal_and_every_state_is_in_the_table() -> None:
    assert set(TRANSITIONS) == set(State) and TRANSITIONS[N] == frozenset()
    assert all(N not in targets for targets in TRANSITIONS.values())  # only ever a starting state


def record(cred: Credential) -> list[Transition]:
    seen: list[Transition] = []
    cred._state.on_move = lambda before, after: seen.append((before, after))
    return seen


Scenario = Callable[[TokenServer, Callable[..., Credential], FakeClock], Awaitable[list[Transition]]]


async def first_token_then_renewal(server, build, clock) -> list[Transition]:
    server.expires_in = 100
    cred = build()
    seen = record(cred)
    await cred.current()  # empty -> renewing -> valid
    await clock.advance(60)  # past the renewal point (50 s)
    await cred.renew()  # valid -> renewing -> valid
    return seen


async def adopts_a_stored_token_at_startup(server, build, clock, store) -> list[Transition]:
    cred = build()
    await store.save(store_key("api"), Token("stored", clock.now() + 600, obtained_at=clock.now()))
    seen = record(cred)
    assert (await cred.current()).access_token == "stored"  # empty -> valid, no request
    assert server.requests == []
    return seen


async def backs_off_then_retries(server, build, clock) -> list[Transition]:
    server.script.append(Reply.html(502))
    cred = build()
    seen = record(cred)
    with pytest.raises(TokenUnavailable):
        await cred.current()  # empty -> renewing -> backing_off
    await clock.advance(1)
    await cred.current()  # backing_off -> renewing -> valid
    return seen


async def backing_off_reset_by_a_login(server, build, clock) -> list[Transition]:
    server.script.append(Reply.html(502))
    cred = build()
    seen = record(cred)
    with pytest.raises(TokenUnavailable):
        await cred.current()
    await cred.refresh()  # explicit reset: backing_off -> empty -> renewing -> valid
    return seen


async def backing_off_with_a_valid_token_reset_by_a_login(server, build, clock) -> list[Transition]:
    server.expires_in = 100
    cred = build()
    await cred.current()
    server.script.append(Reply.html(502))
    await clock.advance(60)
    seen = record(cred)
    await cred.renew()  # valid -> renewing -> backing_off (the token is still served)
    assert (await cred.refresh()).access_token == "at-2"  # reset: backing_off -> valid, then a new token
    assert len(server.requests) == 3
    return seen


async def failed_then_cool_down(server, build, clock) -> list[Transition]:
    server.script.append(Reply.error("invalid_client", status=401))
    cred = build()
    seen = record(cred)
    with pytest.raises(CredentialFailed):
        await cred.current()  # renewing -> failed
    await clock.advance(300)  # the cool-down: one lazy retry
    await cred.current()  # failed -> renewing -> valid
    return seen


async def failed_then_reset(server, build, clock) -> list[Transition]:
    server.script.append(Reply.error("invalid_client", status=401))
    cred = build()
    seen = record(cred)
    with pytest.raises(CredentialFailed):
        await cred.current()
    await cred.refresh()  # failed -> empty -> renewing -> valid
    return seen


async def failed_then_a_token_in_the_store(server, build, clock, store) -> list[Transition]:
    server.script.append(Reply.error("invalid_client", status=401))
    cred = build()
    seen = record(cred)
    with pytest.raises(CredentialFailed):
        await cred.current()
    await store.save(store_key("api"), Token("elsewhere", clock.now() + 600, obtained_at=clock.now()))
    await clock.advance(1)
    assert (await cred.current()).access_token == "elsewhere"  # failed -> valid
    return seen


async def login_required_then_a_login_elsewhere(server, build, clock, store) -> list[Transition]:
    server.script.append(Reply.error("invalid_grant"))
    cred = build("refresh_token", refresh_token="rt-dead")
    seen = record(cred)
    with pytest.raises(LoginRequired):
        await cred.current()  # renewing -> login_required
    login = Token("at-new", clock.now() + 600, refresh_token="rt-new", obtained_at=clock.now())
    await store.save(store_key("api"), login)
    await clock.advance(5)
    await cred.renew()  # the refresher's poll: login_required -> valid
    return seen


async def login_required_then_reset(server, build, clock) -> list[Transition]:
    cred = build("authorization_code", authorize_url="http://127.0.0.1:9/authorize")
    seen = record(cred)
    with pytest.raises(LoginRequired):
        await cred.current()  # nothing stored: renewing -> login_required
    with pytest.raises(LoginRequired):
        await cred.refresh()  # the reset after a login that did not store anything: login_required -> empty -> ...
    return seen


SCENARIOS: dict[str, tuple[Scenario, list[Transition]]] = {
    "first token, then renewal": (first_token_then_renewal, [(E, R), (R, V), (V, R), (R, V)]),
    "stored token at startup": (adopts_a_stored_token_at_startup, [(E, V)]),
    "transient failure, backoff, retry": (backs_off_then_retries, [(E, R), (R, B), (B, R), (R, V)]),
    "backing off, reset by a login": (backing_off_reset_by_a_login, [(E, R), (R, B), (B, E), (E, R), (R, V)]),
    "backing off with a valid token, reset": (
        backing_off_with_a_valid_token_reset_by_a_login,
        [(V, R), (R, B), (B, V), (V, R), (R, V)],
    ),
    "failed, cool-down, lazy retry": (failed_then_cool_down, [(E, R), (R, F), (F, R), (R, V)]),
    "failed, reset": (failed_then_reset, [(E, R), (R, F), (F, E), (E, R), (R, V)]),
    "failed, a token saved elsewhere": (failed_then_a_token_in_the_store, [(E, R), (R, F), (F, V)]),
    "login required, a login elsewhere": (login_required_then_a_login_elsewhere, [(E, R), (R, L), (L, V)]),
    "login required, reset": (login_required_then_reset, [(E, R), (R, L), (L, E), (E, R), (R, L)]),
}


@pytest.mark.parametrize("name", list(SCENARIOS))
async def test_scenario(name, server, build, clock, store, request) -> None:
    scenario, expected = SCENARIOS[name]
    takes_store = "store" in scenario.__code__.co_varnames[: scenario.__code__.co_argcount]
    seen = await (scenario(server, build, clock, store) if takes_store else scenario(server, build, clock))
    assert seen == expected


def test_the_scenarios_cover_every_allowed_transition() -> None:
    covered = {t for _, expected in SCENARIOS.values() for t in expected}
    allowed = {(a, b) for a, targets in TRANSITIONS.items() for b in targets}
    assert covered == allowed, f"not exercised: {sorted(allowed - covered)}; not allowed: {sorted(covered - allowed)}"


async def test_not_configured_never_requests(transport, store, clock) -> None:
    from authproxy.credentials.build import build_credential
    from tests.fakes import make_route

    cred = build_credential(
        make_route(grant="client_credentials", token_url="http://127.0.0.1:9/t", client_id="", client_secret=""),
        transport=transport,
        store=store,
        clock=clock,
    )
    assert cred is not None and cred.state is N
    seen = record(cred)
    cred.start()
    for call in (cred.current, cred.refresh):
        with pytest.raises(CredentialFailed) as err:
            await call()
        assert err.value.code == "not_configured"
    await cred.renew()  # the refresher never runs for it; asked anyway, it does nothing
    await clock.advance(10_000)
    assert seen == [] and cred.next_attempt_in() is None
