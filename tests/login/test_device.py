"""RFC 8628 device login against a fake provider (a real server on loopback): the interval, slow_down,
authorization_pending, expired_token, access_denied and broken device endpoints, on a fake clock."""

from __future__ import annotations

import asyncio
import io

import pytest

from authproxy.config.load import parse_config
from authproxy.credentials.identity import store_key, token_identity
from authproxy.errors import ConfigError
from authproxy.login.device_cli import run_device_login
from tests.conftest import wait_until
from tests.fakes import make_route
from tests.fakes.idp import OIDC, FakeIdp
from tests.fakes.token_server import Reply

DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"


@pytest.fixture
def idp(server) -> FakeIdp:
    return FakeIdp(server)


def device_route(idp: FakeIdp, **auth):
    base = idp.server.base_url
    auth.setdefault("device_authorization_url", f"{base}/device")
    auth.setdefault("token_url", f"{base}/token")
    return make_route(
        "api",
        grant="authorization_code",
        login="device",
        client_id="cid",
        client_secret="SENTINEL-secret",
        scope="read offline_access",
        **auth,
    )


class DeviceLogin:
    """`run_device_login` as a task, moved along poll by poll on the fake clock."""

    def __init__(self, idp: FakeIdp, route, store, clock, transport) -> None:
        self.idp, self.clock, self.out = idp, clock, io.StringIO()
        self.task = asyncio.ensure_future(
            run_device_login(route, store, clock=clock, transport=transport, out=self.out)
        )

    async def started(self) -> None:
        await wait_until(lambda: self.clock.sleepers == 1 or self.task.done())

    async def poll(self, seconds: float) -> None:
        """Let `seconds` pass; wait for the poll they trigger to be answered."""
        polls = len(self.idp.requests_to("/token"))
        await self.clock.advance(seconds)
        await wait_until(lambda: len(self.idp.requests_to("/token")) == polls + 1 or self.task.done())
        await wait_until(lambda: self.clock.sleepers == 1 or self.task.done())


async def test_polls_at_the_interval_slows_down_and_saves_the_tokens(idp, store, clock, transport) -> None:
    idp.tokens = [
        Reply.error("authorization_pending"),
        Reply.error("slow_down"),
        Reply.error("authorization_pending"),
        Reply.token("at-device", 3600, refresh_token="SENTINEL-rt", scope="read offline_access"),
    ]
    route = device_route(idp)
    login = DeviceLogin(idp, route, store, clock, transport)
    await login.started()
    for seconds in (5, 5, 10, 10):  # slow_down: 5 s more from then on
        await login.poll(seconds)
    assert await login.task == 0, login.out.getvalue()
    polls = idp.requests_to("/token")
    assert [r.at for r in polls] == [5.0, 10.0, 20.0, 30.0]
    assert polls[0].form == {
        "grant_type": DEVICE_GRANT,
        "device_code": "SENTINEL-device-code",
        "scope": "read offline_access",
    }
    assert polls[0].basic_auth() == ("cid", "SENTINEL-secret")
    (device,) = idp.requests_to("/device")
    assert device.form == {"client_id": "cid", "scope": "read offline_access"}
    assert device.basic_auth() == ("cid", "SENTINEL-secret")
    stored = await store.load(store_key("api"))
    assert (stored.access_token, stored.refresh_token) == ("at-device", "SENTINEL-rt")
    assert stored.identity == token_identity(route.auth)
    out = login.out.getvalue()
    base = idp.server.base_url
    assert out.splitlines()[:5] == [
        "To log in route api, open this link on any device with a browser:",
        "",
        f"  {base}/activate?user_code=WDJB-MJHT&x=1",  # for a browser, not a shell: no quotes to strip
        "",
        "and check that it shows the code WDJB-MJHT.",
    ]
    assert "Logged in: route api (access token valid for 3600s, refresh token stored" in out
    assert "SENTINEL" not in out


@pytest.mark.parametrize(
    ("reply", "message"),
    [
        (
            Reply.error("expired_token"),
            "login failed: the user code WDJB-MJHT expired before it was confirmed (expired_token); "
            "run `authproxy login api --device` again (or open /-/login/api)\n",
        ),
        (
            Reply.error("access_denied", "the user said no"),
            "login failed: the login was denied at the provider (access_denied); "
            "run `authproxy login api --device` again (or open /-/login/api) and approve the access\n",
        ),
        (
            Reply.error("invalid_client"),
            "login failed: the device code could not be exchanged: token endpoint answered HTTP 400: invalid_client; "
            "check client_id and client_secret (or the client's key)\n",
        ),
    ],
)
async def test_the_users_decision_and_refusals_end_with_a_clear_message(
    idp, store, clock, transport, reply, message
) -> None:
    idp.tokens = [Reply.error("authorization_pending"), reply]
    login = DeviceLogin(idp, device_route(idp), store, clock, transport)
    await login.started()
    await login.poll(5)
    await login.poll(5)
    assert await login.task == 1
    assert login.out.getvalue().splitlines()[-1] + "\n" == message
    assert await store.load(store_key("api")) is None


async def test_a_code_the_server_never_resolves_expires_on_our_clock(idp, store, clock, transport) -> None:
    idp.device = idp.device_reply(expires_in=12, interval=None)  # no interval: 5 s
    idp.tokens = [Reply.error("authorization_pending")] * 5
    login = DeviceLogin(idp, device_route(idp), store, clock, transport)
    await login.started()
    await login.poll(5)
    await login.poll(5)
    await clock.advance(5)
    assert await login.task == 1
    assert len(idp.requests_to("/token")) == 2
    assert "the user code WDJB-MJHT expired before it was confirmed; run" in login.out.getvalue()


@pytest.mark.parametrize(
    ("device", "words"),
    [
        (
            Reply.html(status=200),
            "answered HTTP 200 with no JSON object (content-type text/html); "
            "check routes.api.auth.device_authorization_url",
        ),
        (
            Reply.error("unauthorized_client", status=400),
            "answered HTTP 400: unauthorized_client; this client may not use",
        ),
        ("no_user_code", "answered without user_code"),
        ("bad_link", "answered a verification_uri that is not an http(s) URL"),
    ],
)
async def test_a_broken_device_endpoint_is_named(idp, store, clock, transport, device, words) -> None:
    overrides = {"no_user_code": {"user_code": None}, "bad_link": {"verification_uri": "javascript:alert(1)"}}
    idp.device = idp.device_reply(**overrides[device]) if isinstance(device, str) else device
    out = io.StringIO()
    assert await run_device_login(device_route(idp), store, clock=clock, transport=transport, out=out) == 1
    text = out.getvalue()
    assert text.startswith(f"login failed: the device authorization endpoint {idp.server.base_url}/device ")
    assert words in text
    assert idp.requests_to("/token") == []


async def test_device_login_finds_its_endpoints_through_the_issuer(idp, store, clock, transport) -> None:
    idp.serve_oidc()
    route = make_route(
        "api", grant="authorization_code", login="device", issuer=idp.issuer, client_id="cid", client_auth="none"
    )
    login = DeviceLogin(idp, route, store, clock, transport)
    await login.started()
    await login.poll(5)
    assert await login.task == 0, login.out.getvalue()
    assert [r.path for r in idp.server.requests] == [OIDC, "/device", "/token"]
    assert idp.requests_to("/device")[0].form == {"client_id": "cid"}
    assert idp.requests_to("/token")[0].form == {
        "grant_type": DEVICE_GRANT,
        "device_code": "SENTINEL-device-code",
        "client_id": "cid",
    }
    assert (await store.load(store_key("api"))).identity == token_identity(route.auth)


def test_login_device_needs_grant_authorization_code_and_no_authorize_url() -> None:
    raw = """
routes:
  tv: {upstream: "https://api.example.com", auth: {grant: GRANT, login: device, client_id: c, client_auth: none,
       token_url: "https://idp.example.com/token", device_authorization_url: "https://idp.example.com/device"}}
"""
    config = parse_config(raw.replace("GRANT", "authorization_code"), env={})
    assert config.routes["tv"].auth.authorize_url is None
    with pytest.raises(ConfigError) as caught:
        parse_config(raw.replace("GRANT", "client_credentials"), env={})
    assert caught.value.problems == [
        (
            "routes.tv.auth.login",
            "a device login stores a refresh token to renew from; set routes.tv.auth.grant: authorization_code",
        )
    ]
