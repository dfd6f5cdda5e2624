"""The numbers agree with their help: errors are 5xx and cut-off responses (the metric and /-/status
alike), 4xx refusals are the client's; an access line counts the bytes of the proxy's own error bodies."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest


@pytest.fixture
def refusing_port() -> Iterator[int]:
    """A port bound but never listening, held for the whole test: connections to it are refused, and no
    listener started later (the proxy's own, on an ephemeral port) can be given it."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


async def test_errors_count_5xx_not_4xx_in_metrics_and_status(
    make_proxy, upstream, client, logs, refusing_port
) -> None:
    proxy = await make_proxy(
        {
            "limits": {"max_body": 10},
            "routes": {
                "api": {"upstream": upstream.url},
                "gone": {"upstream": f"http://127.0.0.1:{refusing_port}"},
            },
        }
    )
    async with client.get(proxy.at("/nowhere")) as resp:  # 404: no route
        assert resp.status == 404
        not_found = await resp.read()
    async with client.post(proxy.at("/api/x"), data=b"x" * 100) as resp:  # 413 on route api
        assert resp.status == 413
        too_large = await resp.read()
    async with client.get(proxy.at("/api/status/500")) as resp:  # the upstream's 5xx
        assert resp.status == 500
    async with client.get(proxy.at("/gone/x")) as resp:  # the proxy's 502
        assert resp.status == 502
        unreachable = await resp.read()
    async with client.head(proxy.at("/gone/x")) as resp:
        assert resp.status == 502

    async with client.get(proxy.at("/-/metrics")) as resp:
        lines = set((await resp.text()).splitlines())
    for line in (
        'authproxy_errors_total{route="api"} 1.0',
        'authproxy_errors_total{route="gone"} 2.0',
        'authproxy_errors_total{route="(none)"} 0.0',
        'authproxy_requests_total{method="POST",route="api",status_class="4xx"} 1.0',
        'authproxy_requests_total{method="GET",route="(none)",status_class="4xx"} 1.0',
    ):
        assert line in lines, line
    async with client.get(proxy.at("/-/status")) as resp:
        routes = {r["name"]: (r["requests"], r["errors"]) for r in (await resp.json())["routes"]}
    assert routes == {"api": (2, 1), "gone": (2, 2)}

    access = [(e["path"], e["status"], e["bytes"]) for e in logs.events if e["event"] == "request"]
    assert access == [
        ("/nowhere", 404, len(not_found)),
        ("/api/x", 413, len(too_large)),
        ("/api/status/500", 500, access[2][2]),
        ("/gone/x", 502, len(unreachable)),
        ("/gone/x", 502, 0),  # HEAD: no body is sent
    ]
    assert min(len(not_found), len(too_large), len(unreachable)) > 50
