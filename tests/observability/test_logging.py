"""Access log content and redaction: no secret ever reaches a log line."""

from __future__ import annotations

import io
import json
import logging
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import structlog
from hypothesis import given, settings
from hypothesis import strategies as st
from structlog.processors import TimeStamper

from authproxy.observability.access_log import AccessLog, access_logger
from authproxy.observability.logging import MASK, LineWriter, LogSetup, Redactor, configure_logging, flush_logs

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


@settings(max_examples=300, deadline=None)
@given(
    path=st.text(),
    route=st.one_of(st.none(), st.text(max_size=20)),
    duration=st.floats(min_value=0, max_value=1e6, allow_nan=False),
    upstream=st.one_of(st.none(), st.floats(min_value=0, max_value=1e6)),
    number=st.integers(min_value=0, max_value=2**63),
    now=st.floats(min_value=0, max_value=4e9),
)
def test_the_fast_access_line_is_what_json_dumps_writes(path, route, duration, upstream, number, now) -> None:
    """The access log builds JSON lines itself (hot path): byte-equal to the renderer's, timestamp included."""
    renderer = structlog.processors.JSONRenderer()
    stamper = TimeStamper(fmt="iso", utc=True)
    access = AccessLog(LogSetup(Redactor(), LineWriter(io.StringIO()), renderer, stamper, logging.INFO, json=True))
    event = {"event": "request", "route": route, "method": "GET", "path": path, "status": 200, "bytes": number}
    event |= {"duration_ms": duration, "upstream_ms": upstream, "request_id": "rid", "retried": True, "level": "info"}
    line = access.json_line(dict(event), now)
    stamp = json.loads(line)["timestamp"]
    assert line == renderer(None, "info", dict(event, timestamp=stamp))  # same bytes, same key order
    stamped = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    assert abs(stamped - datetime.fromtimestamp(now, UTC)) <= timedelta(microseconds=1)
    assert stamp.endswith("Z") and (stamped.microsecond == 0) == ("." not in stamp)  # isoformat's shape


def test_the_access_log_uses_the_fast_line_for_plain_json_only() -> None:
    """The fast line is built only where configure_logging set up structlog's plain JSON renderer."""
    assert access_logger_after("json").fast
    assert not access_logger_after("console").fast
    assert access_logger_after("json", level="warning") is None  # info lines are off: no access log at all
    stream = io.StringIO()
    configure_logging("info", "json", redactor=Redactor(["SENTINEL-X"]), stream=stream)
    access = access_logger()
    assert access is not None
    access({"event": "request", "path": "/a?k=SENTINEL-X", "status": 200})
    flush_logs()
    (line,) = stream.getvalue().splitlines()
    assert json.loads(line)["path"] == f"/a?k={MASK}" and "SENTINEL-X" not in line


def access_logger_after(fmt: str, level: str = "info") -> Any:
    configure_logging(level, fmt, stream=io.StringIO())
    return access_logger()


async def test_lines_logged_during_a_request_carry_its_id_route_and_client(
    make_proxy, upstream, token_server, client, logs
) -> None:
    """The token renewal a 401 triggers logs from the request's context: request id, route and client."""
    key = "alice-key-0123456789abcdef"
    auth = {"grant": "client_credentials", "token_url": token_server.url, "client_id": "c", "client_secret": "s"}
    proxy = await make_proxy(
        {"clients": {"alice": {"key": key}}, "routes": {"api": {"upstream": upstream.url, "auth": auth}}}
    )
    await proxy.credential().wait_idle()
    upstream.valid_tokens = {"at-2"}  # the first token is refused: the request renews it
    headers = {"X-Request-ID": "rid-renew-1", "X-Authproxy-Key": key}
    async with client.get(proxy.at("/api/auth/x"), headers=headers) as resp:
        assert resp.status == 200
    renewed = [e for e in logs.events if e["event"] == "token_refreshed"]
    assert [e.get("request_id") for e in renewed] == [None, "rid-renew-1"]  # startup's has none
    assert renewed[1]["route"] == "api" and renewed[1]["client"] == "alice"


@pytest.mark.parametrize(
    "shown",
    [
        "kX9+/vQ2=Zr8&pL%",  # as configured
        "kX9%2B%2FvQ2%3DZr8%26pL%25",  # percent-encoded
        "kX9%2b%2fvQ2%3dZr8%26pL%25",  # the same, lower-case hex
        "kX9%2B%2FvQ2%3DZr8%26pL%25".replace("%2F", "%2F"),  # form-encoded (quote_plus) is the same here
        "kX9+\\/vQ2=Zr8&pL%".replace("\\/", "/"),  # JSON-escaped (json.dumps escapes no / or +)
        "a1g5Ky92UTI9WnI4JnBMJQ==",  # Base64
        "a1g5Ky92UTI9WnI4JnBMJQ",  # Base64 without padding
    ],
)
def test_every_form_of_a_secret_is_masked(shown: str) -> None:
    secret = "kX9+/vQ2=Zr8&pL%"
    text = Redactor([secret]).text(f"error_description: you sent client_secret_x {shown} and more")
    assert shown not in text and MASK in text


def test_a_json_escaped_secret_is_masked() -> None:
    secret = 'ab"c\\d\tef'
    text = Redactor([secret]).text(json.dumps({"echo": secret}))
    assert "ab" not in text.replace(MASK, "") and MASK in text
