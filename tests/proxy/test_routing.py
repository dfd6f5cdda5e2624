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
