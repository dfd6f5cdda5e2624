"""Credential: cache, single flight, max_wait, store, rotation and error classification."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Callable

import pytest
from structlog.testing import capture_logs

from authproxy.credentials.build import build_credential
from authproxy.credentials.credential import Credential
from authproxy.credentials.identity import store_key
from authproxy.credentials.tokens import Token
from authproxy.errors import ConfigError, CredentialFailed, LoginRequired, TokenUnavailable
from authproxy.stores.base import TokenStore
from tests.fakes import RecordedRequest, Reply, TokenServer, make_route, settle

Build = Callable[..., Credential]
KEY = store_key("api")


# -- building ----------------------------------------------------------------------------------------


async def test_grant_none_builds_nothing_and_static_never_calls_out(transport, store, clock) -> None:
    assert build_credential(make_route(grant="none"), transport=transport, store=store, clock=clock) is None
    cred = build_credential(
        make_route(grant="static", token="k-123", token_type="Token"), transport=transport, store=store, clock=clock
    )
    token = await cred.current()
    assert (token.access_token, token.expires_at) == ("k-123", None)
    assert cred.headers(token) == {"Authorization": "Token k-123"}
    assert store.keys() == []  # a config secret is not copied into the store
    plain = build_credential(make_route(grant="static", token="k"), transport=transport, store=store, clock=clock)
    assert (await plain.current()).token_type == "Bearer"


def test_config_errors_name_the_path(transport, store, clock) -> None:
    with pytest.raises(ConfigError) as err:
        build_credential(
            make_route(grant="client_credentials", client_id="c"), transport=transport, store=store, clock=clock
        )
    assert "routes.api.auth.token_url" in str(err.value)
    with pytest.raises(ConfigError) as err:
        build_credential(
            make_route(grant="client_credentials", token_url="http://x/t"),
            transport=transport,
            store=store,
            clock=clock,
        )
    assert "routes.api.auth.client_id" in str(err.value)
    with pytest.raises(ConfigError):
        build_credential(make_route(grant="static"), transport=transport, store=store, clock=clock)


# -- single flight and waiting -------------------------------------------------------------------------


async def test_500_concurrent_cold_callers_make_one_request(server: TokenServer, build: Build) -> None:
    cred = build()
    server.gate = asyncio.Event()
    calls = asyncio.gather(*(cred.current() for _ in range(500)))
    await server.wait_for_requests(1)
    await settle()
    assert len(server.requests) == 1
    assert cred.status()["state"] == "renewing"
    server.gate.set()
    tokens = await calls
    assert {t.access_token for t in tokens} == {"at-1"}
    assert len(server.requests) == 1
    assert server.max_in_flight == 1


async def test_500_concurrent_callers_on_an_expired_token_make_one_request(server, build, clock) -> None:
    cred = build()
    assert (await cred.current()).access_token == "at-1"
    await clock.advance(3600)
    server.gate = asyncio.Event()
    calls = asyncio.gather(*(cred.current() for _ in range(500)))
    await server.wait_for_requests(2)
    await settle()
    server.gate.set()
    assert {t.access_token for t in await calls} == {"at-2"}
    assert len(server.requests) == 2


async def test_refresh_stale_from_100_callers_fetches_once(server, build) -> None:
    cred = build()
    stale = await cred.current()
    server.gate = asyncio.Event()
    calls = asyncio.gather(*(cred.refresh(stale) for _ in range(100)))
    await server.wait_for_requests(2)
    await settle()
    server.gate.set()
    assert {t.access_token for t in await calls} == {"at-2"}
    assert len(server.requests) == 2


async def test_refresh_of_an_already_replaced_token_fetches_nothing(server, build) -> None:
    cred = build()
    stale = await cred.current()
    newer = await cred.refresh(stale)
    assert newer.access_token == "at-2"
    assert [(await cred.refresh(stale)).access_token for _ in range(10)] == ["at-2"] * 10
    assert len(server.requests) == 2


async def test_max_wait_exceeded_is_token_unavailable(server, build, clock) -> None:
    cred = build(max_wait=5.0)
    server.gate = asyncio.Event()
    waiting = asyncio.ensure_future(cred.current())
    await server.wait_for_requests(1)
    await clock.advance(4.9)
    assert not waiting.done()
    await clock.advance(0.2)
    with pytest.raises(TokenUnavailable) as err:
        await waiting
    assert err.value.retry_after == 1.0 and "within 5s" in err.value.message
    server.gate.set()
    await cred.wait_idle()
    assert (await cred.current()).access_token == "at-1"  # the fetch went on and its token is cached
    assert len(server.requests) == 1


async def test_lifetime_counts_from_when_the_request_was_sent(server, build, clock) -> None:
    cred = build(max_wait=1000.0)
    server.gate = asyncio.Event()
    sent = clock.now()
    waiting = asyncio.ensure_future(cred.current())
    await server.wait_for_requests(1)
    await clock.advance(100)
    server.gate.set()
    token = await waiting
    assert token.expires_at == sent + 3600
    assert token.obtained_at == sent


async def test_expired_token_is_never_returned(server, build, clock) -> None:
    cred = build()
    server.expires_in = 10
    await cred.current()
    await clock.advance(10)
    server.script.append(Reply.html(503))
    with pytest.raises(TokenUnavailable):
        await cred.current()
    with pytest.raises(TokenUnavailable) as err:  # during the backoff: no request, time left as Retry-After
        await cred.current()
    assert err.value.retry_after == 1.0
    assert len(server.requests) == 2
    await clock.advance(1.0)
    assert (await cred.current()).access_token == "at-2"  # lazy retry once the backoff is over
    assert len(server.requests) == 3


async def test_restart_reuses_a_stored_valid_token(server, build, store, clock) -> None:
    await store.save(KEY, Token("stored-at", clock.now() + 500, obtained_at=clock.now() - 100))
    cred = build()
    assert (await cred.current()).access_token == "stored-at"
    assert server.requests == []


async def test_a_token_stored_for_another_client_or_scope_is_not_reused_after_a_restart(
    server, build, store, clock
) -> None:
    """The store key is the route name; the token's identity says which client, endpoint and scope got it."""
    first = await build(scope="read").current()
    assert (await store.load(KEY)).identity == first.identity is not None
    rotated_secret = await build(scope="read", client_secret="rotated").current()  # same client: token kept
    assert rotated_secret == first and len(server.requests) == 1
    changes = [{"client_id": "other-client"}, {"scope": "read write"}, {"token_url": server.url + "?v=2"}]
    for change in changes:
        change = {"scope": "read", **change}
        before = len(server.requests)
        with capture_logs() as logged:
            token = await build(**change).current()
        assert len(server.requests) == before + 1 and token != first
        assert [e["event"] for e in logged if e["log_level"] == "warning"] == ["stored_token_ignored"]
        assert (await store.load(KEY)).identity == token.identity != first.identity


async def test_a_refresh_token_from_another_client_is_ignored_but_a_legacy_entry_is_used(server, build, store) -> None:
    await store.save(KEY, Token("x", 0.0, refresh_token="rt-other", identity="v1:another-client"))
    await build("refresh_token", refresh_token="rt-config").current()
    assert server.requests[-1].params["refresh_token"] == "rt-config"
    await store.save(KEY, Token("x", 0.0, refresh_token="rt-legacy"))  # saved before tokens carried an identity
    await build("refresh_token", refresh_token="rt-config").current()
    assert server.requests[-1].params["refresh_token"] == "rt-legacy"


# -- errors --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "error", ["invalid_client", "invalid_scope", "unauthorized_client", "invalid_grant", "unsupported_grant_type"]
)
async def test_permanent_errors_fail_the_credential(server, build, clock, error) -> None:
    server.default = lambda _req: Reply.error(error, "nope", status=401 if error == "invalid_client" else 400)
    cred = build()
    with pytest.raises(CredentialFailed) as err:
        await cred.current()
    assert (err.value.code, err.value.status, err.value.route) == ("credential_failed", 503, "api")
    assert error in err.value.message and "csecret" not in err.value.message
    status = cred.status()
    assert (status["state"], status["last_outcome"], status["last_error_code"]) == ("failed", "failed", error)
    for _ in range(5):  # no hot retry: requests fail fast without calling the endpoint
        with pytest.raises(CredentialFailed):
            await cred.current()
    assert len(server.requests) == 1
    await clock.advance(300)
    with pytest.raises(CredentialFailed):  # after the cool-down one request may try again
        await cred.current()
    assert len(server.requests) == 2


@pytest.mark.parametrize("grant", ["refresh_token", "authorization_code"])
async def test_invalid_grant_on_refresh_means_login_required(server, build, store, grant) -> None:
    await store.save(KEY, Token("old", 0.0, refresh_token="rt-dead"))
    server.default = lambda _req: Reply.error("invalid_grant", "Unknown or invalid refresh token.")
    cred = build(grant)
    with pytest.raises(LoginRequired) as err:
        await cred.current()
    assert "run: authproxy login api" in err.value.message
    assert (err.value.code, err.value.status) == ("login_required", 503)
    assert cred.status()["state"] == "login_required"
    assert "authproxy login api" in cred.status()["message"]
    with pytest.raises(LoginRequired):
        await cred.current()
    assert len(server.requests) == 1


async def test_authorization_code_without_stored_token_needs_login(server, build) -> None:
    cred = build("authorization_code")
    with pytest.raises(LoginRequired) as err:
        await cred.current()
    assert "run: authproxy login api" in err.value.message
    assert server.requests == []
    assert cred.status()["state"] == "login_required"


async def test_a_new_login_in_the_store_ends_login_required(server, build, store, clock) -> None:
    cred = build("authorization_code")
    with pytest.raises(LoginRequired):
        await cred.current()
    await store.save(KEY, Token("from-login", clock.now() + 3600, refresh_token="rt-login", obtained_at=clock.now()))
    assert (await cred.current()).access_token == "from-login"
    assert cred.status()["state"] == "valid"
    assert server.requests == []


async def test_a_logout_is_not_undone_by_the_refresh_token_held_in_memory(server, build, store, clock) -> None:
    await store.save(KEY, Token("from-login", clock.now() + 3600, refresh_token="rt-login", obtained_at=clock.now()))
    cred = build("authorization_code")
    assert (await cred.current()).access_token == "from-login"
    await store.delete(KEY)  # `authproxy logout` in another process
    with pytest.raises(LoginRequired):
        await cred.refresh(await cred.current())  # the next renewal
    assert server.requests == []  # the logged-out refresh token was not used
    assert await store.load(KEY) is None  # and nothing was written back
    assert cred.status()["state"] == "login_required"


async def test_a_new_configured_refresh_token_starts_a_new_chain(server, build, store) -> None:
    rotation = server.rotate_refresh_tokens("rt-old")
    await build("refresh_token", refresh_token="rt-old").current()
    assert (await store.load(KEY)).refresh_token == "rt-1"  # the stored chain descends from rt-old
    rotation.valid = "rt-new"  # the user got a new refresh token (say, from another account) and configured it
    await build("refresh_token", refresh_token="rt-new").current()
    assert rotation.used == ["rt-old", "rt-new"] and rotation.reused == []  # not the stored rt-1 of the old chain


# -- refresh token rotation ----------------------------------------------------------------------------


async def test_rotation_saves_the_new_refresh_token_and_never_reuses(server, build, store, clock) -> None:
    rotation = server.rotate_refresh_tokens("rt-0")
    cred = build("refresh_token", refresh_token="rt-0")
    first = await cred.current()
    assert (first.refresh_token, (await store.load(KEY)).refresh_token) == ("rt-1", "rt-1")
    await clock.advance(3600)
    second = await cred.current()
    assert second.refresh_token == "rt-2" and await store.load(KEY) == second
    assert await cred.refresh(second) != second
    assert [r.params["refresh_token"] for r in server.requests] == ["rt-0", "rt-1", "rt-2"]
    assert rotation.reused == []


async def test_store_refresh_token_wins_over_config(server, build, store) -> None:
    await store.save(KEY, Token("x", 0.0, refresh_token="rt-store"))
    await build("refresh_token", refresh_token="rt-config").current()
    assert server.requests[0].params["refresh_token"] == "rt-store"


class UnlockedStore(TokenStore):
    """A shared store whose lock covers nothing (like two processes on a plain file): races can happen."""

    def __init__(self) -> None:
        super().__init__()
        self.data: dict[str, Token] = {}

    @contextlib.asynccontextmanager
    async def lock(self, key: str) -> AsyncIterator[None]:
        yield

    async def load(self, key: str) -> Token | None:
        return self.data.get(key)

    async def save(self, key: str, token: Token) -> None:
        self.data[key] = token

    async def delete(self, key: str) -> None:
        self.data.pop(key, None)


async def test_invalid_grant_after_another_process_rotated_adopts_its_token(server, build, clock) -> None:
    shared = UnlockedStore()
    shared.data[KEY] = Token("old", 0.0, refresh_token="rt-0")
    rotation = server.rotate_refresh_tokens("rt-0")
    ours, theirs = build("refresh_token", store_=shared), build("refresh_token", store_=shared)

    async def they_rotate_first(request: RecordedRequest) -> Reply:
        await theirs.current()  # the other process wins the race with the same refresh token
        return rotation(request)

    server.script.append(they_rotate_first)
    token = await ours.current()
    assert token.access_token == "at-1" and token.refresh_token == "rt-1"
    assert ours.status()["state"] == "valid"
    assert len(server.requests) == 2


async def test_invalid_grant_after_rotation_retries_once_with_the_stored_token(server, build, clock) -> None:
    shared = UnlockedStore()
    shared.data[KEY] = Token("old", 0.0, refresh_token="rt-0")
    rotation = server.rotate_refresh_tokens("rt-0")

    def rotated_elsewhere(request: RecordedRequest) -> Reply:
        rotation.used.append("rt-0")
        rotation.valid = "rt-other"
        shared.data[KEY] = Token("expired-elsewhere", clock.now() - 1, refresh_token="rt-other")
        return rotation(request)

    server.script.append(rotated_elsewhere)
    token = await build("refresh_token", store_=shared).current()
    assert [r.params["refresh_token"] for r in server.requests] == ["rt-0", "rt-other"]
    assert token.refresh_token == "rt-2" and shared.data[KEY] == token


# -- status and secrets --------------------------------------------------------------------------------

SENTINELS = ("SENTINEL-SECRET", "SENTINEL-RT", "SENTINEL-AT", "SENTINEL-NEW-RT")


async def test_status_and_logs_never_contain_tokens_or_secrets(server, build, clock) -> None:
    server.script.append(Reply.token("SENTINEL-AT", 100, refresh_token="SENTINEL-NEW-RT"))
    server.default = lambda _req: Reply.error("server_error", "SENTINEL-SECRET SENTINEL-NEW-RT", status=500)
    with capture_logs() as logs:
        cred = build("refresh_token", client_secret="SENTINEL-SECRET", refresh_token="SENTINEL-RT")
        seen = [cred.status()]
        await cred.current()
        seen.append(cred.status())
        await clock.advance(100)
        with pytest.raises(TokenUnavailable) as err:
            await cred.current()
        seen.append(cred.status())
        server.default = lambda _req: Reply.error("invalid_client", "SENTINEL-SECRET", status=401)
        await clock.advance(1)
        with pytest.raises(CredentialFailed) as failed:
            await cred.current()
        seen.append(cred.status())
    assert [s["state"] for s in seen] == ["empty", "valid", "backing_off", "failed"]
    text = json.dumps(seen) + repr(logs) + err.value.message + failed.value.message
    for sentinel in SENTINELS:
        assert sentinel not in text
    assert {e["event"] for e in logs} >= {"token_refreshed", "token_fetch_failed"}
