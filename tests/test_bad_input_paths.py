"""Path spellings that hide a climb, a NUL or a non-standard escape, against a real proxy over raw sockets
(issue 14, item 7; the older traversal spellings are in test_bad_input.py).

Each refused target gets a JSON 400 `bad_path` naming what was refused (never the target itself),
nothing reaches the upstream, and the connection keeps serving. Legitimate encodings still reach the
upstream byte-for-byte.
"""

from __future__ import annotations

import pytest

from tests.conftest import RunningProxy
from tests.fakes.badinput import RawConnection, get, raw_request
from tests.fakes.upstream import FakeUpstream
from tests.test_bad_input import assert_json_error, assert_still_serving, plain_cfg

# target -> words the refusal's message must hold (what was refused)
REFUSED = {
    "/api/%2525252e%2525252e/x": "climbs out",  # four times encoded
    "/api/a/%2525252e%2525252e%2525252fb/%2525252e%2525252e%2525252f..": "climbs out",
    "/api/..%00": "NUL",
    "/api/..%00/x": "NUL",
    "/api/x%00.json": "NUL",  # a NUL that climbs nowhere is refused too
    "/api/%252500": "NUL",  # at any decoding depth
    "/api/..%c0%af..%c0%afx": "overlong",
    "/api/..%C0%AFx": "overlong",
    "/api/%c0%ae%c0%ae/x": "overlong",
    "/api/%c0%2e%c0%ae/x": "overlong",
    "/api/%e0%80%ae%e0%80%ae/x": "overlong",
    "/api/%f0%80%80%ae%f0%80%80%ae/x": "overlong",
    "/api/%25c0%25ae%25c0%25ae/x": "overlong",
    "/api/%u002e%u002e/x": "%u",
    "/api/%u002E%u002E%u002Fx": "%u",
    "/api/..%u2215x": "%u",
    "/api/%" + "25" * 12 + "2e%2e": "levels",
}


@pytest.fixture
async def proxy(make_proxy, upstream: FakeUpstream) -> RunningProxy:
    return await make_proxy(plain_cfg(upstream.url))


@pytest.mark.parametrize(("target", "words"), list(REFUSED.items()), ids=list(REFUSED))
async def test_hidden_climbs_nul_overlong_and_u_escapes_are_400_bad_path(
    proxy: RunningProxy, upstream: FakeUpstream, target: str, words: str
) -> None:
    conn = await RawConnection.open(proxy.url)
    try:
        await conn.send(get(target))
        resp = await conn.response()
        error = assert_json_error(resp, 400, "bad_path", route="api")
        assert words in error["message"], error
        assert target.removeprefix("/api") not in error["message"]  # says what, never echoes the target
        assert upstream.seen == []
        assert not resp.closed
        await conn.send(get("/api/after"))
        again = await conn.response()
        assert again.status == 200 and upstream.last.raw_path == "/base/after"
    finally:
        conn.close()


@pytest.mark.parametrize("target", ["/%2525252e%2525252e/x", "/..%00", "/%c0%ae%c0%ae", "/%u002e%u002e"])
async def test_the_same_under_a_root_prefix(make_proxy, upstream: FakeUpstream, target: str) -> None:
    proxy = await make_proxy({"routes": {"root": {"upstream": upstream.url + "/base", "prefix": "/"}}})
    resp = await raw_request(proxy.url, get(target))
    assert_json_error(resp, 400, "bad_path", route="root")
    assert upstream.seen == []


@pytest.mark.parametrize(
    "target",
    [
        "/api/a%2Fb/c",
        "/api/a%2f..%2fb/c",
        "/api/%20spaced%20name",
        "/api/caf%C3%A9/%E2%82%AC/%F0%9F%98%80",
        "/api/%E0%A0%80/%F0%90%80%80",
        "/api/%ff%fe/%c3%28",
        "/api/%2525/%25252e",
        "/api/x?q=%00%c0%ae%u002e&next=../../..",
    ],
)
async def test_legitimate_encodings_still_reach_the_upstream_byte_for_byte(
    proxy: RunningProxy, upstream: FakeUpstream, target: str
) -> None:
    resp = await raw_request(proxy.url, get(target))
    assert resp.status == 200, resp.raw[:300]
    path, sep, query = target.removeprefix("/api").partition("?")
    assert upstream.last.raw_path == "/base" + path + sep + query
    await assert_still_serving(proxy, upstream)
