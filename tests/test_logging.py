"""Access log content and redaction: no secret ever reaches a log line."""

from __future__ import annotations

import pytest

from authproxy.logging import MASK, Redactor

SENTINELS = ("SENTINEL-HEADER-KEY", "SENTINEL-CLIENT-AUTH", "SENTINEL-QUERY-CODE", "SENTINEL-REFRESH")


async def test_access_line_per_request(make_proxy, upstream, client, logs) -> None:
    proxy = await make_proxy({"routes": {"api": {"upstream": upstream.url}}})
    async with client.post(proxy.at("/api/x?y=1"), data=b"12345", headers={"X-Request-ID": "rid-7"}) as resp:
        await resp.read()
    (line,) = [e for e in logs.events if e["event"] == "request"]
    assert line["route"] == "api" and line["method"] == "POST" and line["path"] == "/api/x?y=1"
    assert line["status"] == 200 and line["bytes"] == 5 and line["request_id"] == "rid-7"
    assert line["duration_ms"] >= 0 and line["upstream_ms"] >= 0 and line["level"] == "info"


async def test_no_sentinel_secret_in_any_log_line(make_proxy, upstream, client, logs) -> None:
    proxy = await make_proxy(
        {
            "log": {"level": "debug"},
            "routes": {
                "api": {"upstream": upstream.url, "headers": {"x-api-key": SENTINELS[0]}},
                "dead": {"upstream": "http://127.0.0.1:9", "headers": {"x-api-key": SENTINELS[0]}},
            },
        }
    )
    targets = [
        f"/api/cb?code={SENTINELS[2]}&state=1",
        f"/api/x?refresh_token={SENTINELS[3]}",
        f"/dead/x?access_token={SENTINELS[2]}",
        "/nope",
        f"/api/%2e%2e?code={SENTINELS[2]}",
    ]
    for target in targets:
        async with client.post(
            proxy.at(target), data=f"refresh_token={SENTINELS[3]}", headers={"Authorization": f"Bearer {SENTINELS[1]}"}
        ) as resp:
            body = await resp.text()
            assert not any(s in body for s in SENTINELS[:2])
    text = logs.text
    assert text.count('"event": "request"') == len(targets)
    for sentinel in SENTINELS:
        assert sentinel not in text


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Authorization: Bearer abc.def-ghi", f"Authorization: Bearer {MASK}"),
        ("Basic dXNlcjpwYXNz", f"Basic {MASK}"),
        ("/cb?code=xyz&state=2", f"/cb?code={MASK}&state=2"),
        (
            "grant_type=refresh_token&refresh_token=r1&client_secret=s1",
            f"grant_type=refresh_token&refresh_token={MASK}&client_secret={MASK}",
        ),
        ('{"access_token": "tok", "expires_in": 3}', f'{{"access_token": "{MASK}", "expires_in": 3}}'),
        ("nothing secret here", "nothing secret here"),
        ("token endpoint answered HTTP 500", "token endpoint answered HTTP 500"),
        ("Token abcdef123456", f"Token {MASK}"),
        ("bearer AbC.dEf-123", f"bearer {MASK}"),
        ("registered value LITERAL-SECRET inside", f"registered value {MASK} inside"),
    ],
)
def test_redactor_patterns(text: str, expected: str) -> None:
    assert Redactor(["LITERAL-SECRET"]).text(text) == expected


def test_redactor_masks_secret_keys_recursively() -> None:
    event = Redactor()(
        None,
        "info",
        {
            "event": "x",
            "client_secret": "s",
            "headers": {"Authorization": "a", "ok": "1"},
            "items": [{"refresh_token": "r"}],
            "code": "token_unavailable",
        },
    )
    assert event == {
        "event": "x",
        "client_secret": MASK,
        "headers": {"Authorization": MASK, "ok": "1"},
        "items": [{"refresh_token": MASK}],
        "code": "token_unavailable",
    }
