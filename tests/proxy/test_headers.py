"""Header rules: hop-by-hop removal, credential stripping, forwarding headers, Location rewriting."""

from __future__ import annotations

import pytest
from multidict import CIMultiDict, CIMultiDictProxy

from authproxy.proxy.headers import (
    request_id_from,
    response_headers,
    rewrite_location,
    route_drop_set,
    upstream_request_headers,
)


def proxy(*pairs: tuple[str, str]) -> CIMultiDictProxy[str]:
    return CIMultiDictProxy(CIMultiDict(pairs))


def test_hop_by_hop_and_connection_listed_headers_dropped() -> None:
    incoming = proxy(
        ("Host", "proxy"),
        ("Connection", "keep-alive, X-Private"),
        ("Keep-Alive", "5"),
        ("TE", "trailers"),
        ("Trailer", "X"),
        ("Transfer-Encoding", "chunked"),
        ("Upgrade", "h2c"),
        ("Proxy-Authorization", "Basic x"),
        ("Proxy-Foo", "1"),
        ("X-Private", "p"),
        ("Accept", "a"),
        ("Accept", "b"),
    )
    out = upstream_request_headers(
        incoming,
        route_drop_set({}, pass_client_auth=False),
        forwarded_for="1.2.3.4",
        proto="http",
        host="proxy:8080",
        request_id="rid",
    )
    assert out.getall("Accept") == ["a", "b"]
    for name in (
        "Host",
        "Connection",
        "Keep-Alive",
        "TE",
        "Trailer",
        "Transfer-Encoding",
        "Upgrade",
        "Proxy-Authorization",
        "Proxy-Foo",
        "X-Private",
    ):
        assert name not in out
    assert out["X-Forwarded-For"] == "1.2.3.4"
    assert out["X-Forwarded-Proto"] == "http"
    assert out["X-Forwarded-Host"] == "proxy:8080"
    assert out["X-Request-ID"] == "rid"


def test_client_credentials_stripped_unless_passed() -> None:
    incoming = proxy(("Authorization", "Bearer client"), ("x-api-key", "client-key"), ("X-Other", "1"))
    strict = upstream_request_headers(
        incoming,
        route_drop_set({"X-Api-Key": "k"}, pass_client_auth=False),
        forwarded_for=None,
        proto="http",
        host="h",
        request_id="r",
    )
    assert "Authorization" not in strict and "x-api-key" not in strict and strict["X-Other"] == "1"
    passed = upstream_request_headers(
        incoming,
        route_drop_set({"X-Api-Key": "k"}, pass_client_auth=True),
        forwarded_for=None,
        proto="http",
        host="h",
        request_id="r",
    )
    assert passed["Authorization"] == "Bearer client" and passed["x-api-key"] == "client-key"


def test_forwarded_for_is_appended() -> None:
    incoming = proxy(("X-Forwarded-For", "10.0.0.1"), ("X-Forwarded-Proto", "https"))
    out = upstream_request_headers(
        incoming,
        route_drop_set({}, pass_client_auth=False),
        forwarded_for="127.0.0.1",
        proto="http",
        host="h",
        request_id="r",
    )
    assert out["X-Forwarded-For"] == "10.0.0.1, 127.0.0.1"
    assert out.getall("X-Forwarded-Proto") == ["http"]


def test_response_headers_keep_repeats_and_drop_hop_by_hop() -> None:
    out = response_headers(
        proxy(
            ("Set-Cookie", "a=1"),
            ("Set-Cookie", "b=2"),
            ("Connection", "close"),
            ("Transfer-Encoding", "chunked"),
            ("Content-Length", "5"),
        )
    )
    assert out.getall("Set-Cookie") == ["a=1", "b=2"]
    assert "Connection" not in out and "Transfer-Encoding" not in out and out["Content-Length"] == "5"


@pytest.mark.parametrize(
    ("given", "expected"),
    [("abc-123", "abc-123"), ("x" * 201, None), ("bad value\r\n", None), (None, None)],
)
def test_request_id(given: str | None, expected: str | None) -> None:
    headers = {"X-Request-ID": given} if given is not None else {}
    rid = request_id_from(headers)
    if expected is None:
        assert len(rid) == 32 and rid != given
    else:
        assert rid == expected


@pytest.mark.parametrize(
    ("location", "expected"),
    [
        ("https://api.example.com/v1/items/2?x=1", "http://127.0.0.1:8080/api/items/2?x=1"),
        ("https://api.example.com/v1", "http://127.0.0.1:8080/api"),
        ("HTTPS://API.EXAMPLE.COM/v1/x", "http://127.0.0.1:8080/api/x"),
        ("/v1/items", "/api/items"),
        ("/v2/items", "/v2/items"),
        ("https://api.example.com/v10/x", "https://api.example.com/v10/x"),
        ("https://elsewhere.example/v1/x", "https://elsewhere.example/v1/x"),
        ("https://api.example.com.evil.example/v1/x", "https://api.example.com.evil.example/v1/x"),
        ("//api.example.com/v1/x", "//api.example.com/v1/x"),
        ("relative/path", "relative/path"),
    ],
)
def test_rewrite_location(location: str, expected: str) -> None:
    assert (
        rewrite_location(
            location,
            origin="https://api.example.com",
            base_path="/v1",
            prefix="/api",
            proxy_origin="http://127.0.0.1:8080",
        )
        == expected
    )
