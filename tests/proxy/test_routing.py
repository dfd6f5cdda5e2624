"""Router: whole-segment longest match, prefix stripping, traversal and open-proxy refusals."""

from __future__ import annotations

import pytest

from authproxy.config.load import parse_config
from authproxy.errors import AbsoluteFormRefused, BadPath, RouteNotFound
from authproxy.proxy.routing import Route, Router


def router(*routes: tuple[str, str, str]) -> Router:
    lines = ["routes:"]
    for name, prefix, upstream in routes:
        lines.append(f"  {name}: {{prefix: '{prefix}', upstream: '{upstream}'}}")
    config = parse_config("\n".join(lines) + "\n", env={})
    return Router([Route(r) for r in config.routes.values()])


R = router(
    ("stockx", "/stockx", "https://api.stockx.com/v2/"),
    ("deep", "/stockx/deep", "https://deep.example"),
    ("other", "/other", "http://127.0.0.1:9000"),
)


@pytest.mark.parametrize(
    ("target", "route", "upstream"),
    [
        ("/stockx", "stockx", "https://api.stockx.com/v2"),
        ("/stockx/", "stockx", "https://api.stockx.com/v2/"),
        ("/stockx/a/b?x=1", "stockx", "https://api.stockx.com/v2/a/b?x=1"),
        ("/stockx/deep", "deep", "https://deep.example/"),
        ("/stockx/deeper", "stockx", "https://api.stockx.com/v2/deeper"),
        ("/stockx/deep/x", "deep", "https://deep.example/x"),
        ("/other/a%2Fb/%20c?q=a+b&q=&z=%2F", "other", "http://127.0.0.1:9000/a%2Fb/%20c?q=a+b&q=&z=%2F"),
        ("/stockx/a/../b", "stockx", "https://api.stockx.com/v2/a/../b"),
    ],
)
def test_longest_whole_segment_match(target: str, route: str, upstream: str) -> None:
    matched, remainder, query = R.match(target)
    assert matched.name == route
    assert str(matched.upstream_url(remainder, query)) == upstream


@pytest.mark.parametrize("target", ["/stockxyz", "/stock", "/", "/otherx/a", "/Stockx"])
def test_no_partial_segment_match(target: str) -> None:
    with pytest.raises(RouteNotFound) as info:
        R.match(target)
    assert "/other, /stockx, /stockx/deep" in info.value.message


@pytest.mark.parametrize(
    "target",
    [
        "/stockx/..",
        "/stockx/../x",
        "/stockx/a/../../x",
        "/stockx/%2e%2e/x",
        "/stockx/%2E%2e/x",
        "/stockx/.%2E/x",
        "/stockx/%252e%252e/x",
        "/stockx/a/..%2F..%2Fx",
        "/stockx/..%5Cx",
        "/stockx/..\\x",
        "/stockx/./../x",
        "/stockx/%2e%2e?x=1",
        "/stockx/..;/x",  # `..;` is `..` to servlet containers
        "/stockx/..;jsessionid=1/x",
        "/stockx/%2e%2e%3B/x",
    ],
)
def test_traversal_out_of_the_base_is_refused(target: str) -> None:
    with pytest.raises(BadPath):
        R.match(target)


@pytest.mark.parametrize(
    "target", ["/stockx/a/..", "/stockx/a/%2e%2e/b", "/stockx/./a", "/stockx/a..b/..c", "/stockx/v1.2/x"]
)
def test_dot_segments_that_stay_inside_are_forwarded(target: str) -> None:
    assert R.match(target)[0].name == "stockx"


@pytest.mark.parametrize("target", ["http://evil.example/x", "https://127.0.0.1/stockx", "evil.example:443"])
def test_absolute_form_refused(target: str) -> None:
    with pytest.raises(AbsoluteFormRefused):
        R.match(target)


def test_asterisk_form_refused() -> None:
    with pytest.raises(BadPath):
        R.match("*")


def test_root_prefix_catches_everything_else() -> None:
    r = router(("root", "/", "https://root.example/base"), ("a", "/a", "https://a.example"))
    assert r.match("/a/x")[0].name == "a"
    route, remainder, query = r.match("/ab/x?y")
    assert route.name == "root"
    assert str(route.upstream_url(remainder, query)) == "https://root.example/base/ab/x?y"
    route, remainder, query = r.match("/")
    assert str(route.upstream_url(remainder, query)) == "https://root.example/base/"


# -- issue 14, item 7: spellings that hide `..`, NUL or a non-standard escape ----------------------

REFUSED_SPELLINGS = {
    "four_times_encoded_dots": ("/stockx/%2525252e%2525252e/x", "climbs out"),
    "five_times_encoded_dots": ("/stockx/%252525252e%252525252e", "climbs out"),
    "encoded_nul_after_dots": ("/stockx/..%00/x", "NUL"),
    "encoded_nul_inside": ("/stockx/a%00b", "NUL"),
    "double_encoded_nul": ("/stockx/a%2500b", "NUL"),
    "overlong_slash": ("/stockx/..%c0%af..%c0%afx", "overlong"),
    "overlong_two_byte_dots": ("/stockx/%c0%ae%c0%ae/x", "overlong"),
    "overlong_c1": ("/stockx/%C1%9C", "overlong"),
    "overlong_three_byte_dot": ("/stockx/%e0%80%ae%e0%80%ae/x", "overlong"),
    "overlong_four_byte_dot": ("/stockx/%f0%80%80%ae", "overlong"),
    "encoded_overlong": ("/stockx/%25c0%25ae%25c0%25ae/x", "overlong"),
    "iis_u_dots": ("/stockx/%u002e%u002e/x", "%u"),
    "iis_u_slash": ("/stockx/..%u2215x", "%u"),
    "iis_u_upper": ("/stockx/%U002E%U002E", "%u"),
    "encoded_iis_u": ("/stockx/%25u002e%25u002e", "%u"),
    "encoded_past_the_bound": ("/stockx/%" + "25" * 12 + "2e", "levels"),
}


@pytest.mark.parametrize(("target", "words"), list(REFUSED_SPELLINGS.values()), ids=list(REFUSED_SPELLINGS))
def test_hidden_dots_nul_overlong_and_u_escapes_are_refused(target: str, words: str) -> None:
    with pytest.raises(BadPath) as info:
        R.match(target)
    assert words in info.value.message and info.value.route == "stockx"


@pytest.mark.parametrize(
    "target",
    [
        "/stockx/a%2Fb/c",  # an encoded slash that does not climb
        "/stockx/a%2F..%2Fb",  # ... nor with a dot-segment that stays inside
        "/stockx/%20x%20",
        "/stockx/caf%C3%A9/%E2%82%AC/%F0%9F%98%80",  # shortest-form UTF-8 of 2, 3 and 4 bytes
        "/stockx/%E0%A0%80/%F0%90%80%80",  # the first 3- and 4-byte code points: not overlong
        "/stockx/%ff%fe/%c3%28/%c0",  # invalid but not overlong UTF-8: the upstream's business
        "/stockx/%2525/%25252e",  # a literal '%25' and an encoded '%2e' that decodes to one dot
        "/stockx/x?q=%00%c0%ae%u002e&p=../..",  # the query is not a path
        "/stockx/%2e%2e%2e/%u",  # '...' is a name; a bare '%u' is not an IIS escape
    ],
)
def test_legitimate_encodings_are_forwarded_byte_for_byte(target: str) -> None:
    route, remainder, query = R.match(target)
    path, _, raw_query = target.partition("?")
    assert route.name == "stockx" and remainder == path.removeprefix("/stockx") and query == (raw_query or None)
    assert str(route.upstream_url(remainder, query)) == "https://api.stockx.com/v2" + target.removeprefix("/stockx")
