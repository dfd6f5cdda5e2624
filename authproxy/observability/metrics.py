"""Per-route traffic counters and histograms, exposed to Prometheus at scrape time.

The hot path only bumps plain integers (no locks, no label lookups); a prometheus-client
collector turns them into metric families when `/-/metrics` is scraped. The same numbers feed
`/-/status`, so there is one source of truth. Labels are route names, methods from a fixed set
and status classes: never a raw path or a secret.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from authproxy.credentials.state import State

METHODS = frozenset(("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"))
BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
UNMATCHED = "(none)"  # the route label of requests that matched no route


class Histogram:
    """Bucket counts for one series; `observe` is a bisect and two additions."""

    __slots__ = ("counts", "sum")

    def __init__(self) -> None:
        self.counts = [0] * (len(BUCKETS) + 1)
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(BUCKETS, value)] += 1
        self.sum += value

    def cumulative(self) -> list[tuple[str, float]]:
        out, total = [], 0
        for bound, count in zip((*BUCKETS, float("inf")), self.counts, strict=True):
            total += count
            out.append(("+Inf" if bound == float("inf") else repr(bound), float(total)))
        return out


@dataclass(slots=True)
class RouteStats:
    requests: dict[tuple[str, str], int] = field(default_factory=dict)  # (method, status class) -> count
    errors: int = 0
    retries_401: int = 0
    in_flight: int = 0
    upstream: Histogram = field(default_factory=Histogram)
    overhead: Histogram = field(default_factory=Histogram)

    @property
    def total(self) -> int:
        return sum(self.requests.values())

    def record(
        self, method: str, status: int, *, upstream_s: float | None, overhead_s: float, retried: bool, failed: bool
    ) -> None:
        key = (method if method in METHODS else "OTHER", f"{status // 100}xx")
        self.requests[key] = self.requests.get(key, 0) + 1
        if failed or status >= 500:
            self.errors += 1
        if retried:
            self.retries_401 += 1
        if upstream_s is not None:
            self.upstream.observe(upstream_s)
        self.overhead.observe(overhead_s)


class Stats:
    """All routes' stats; survives config reloads (a route keeps its numbers by name)."""

    def __init__(self) -> None:
        self.routes: dict[str, RouteStats] = {}

    def route(self, name: str) -> RouteStats:
        stats = self.routes.get(name)
        if stats is None:
            stats = self.routes[name] = RouteStats()
        return stats


class Collector:
    """A prometheus-client collector reading `Stats` and credential states at scrape time."""

    def __init__(self, stats: Stats, credential_states: Callable[[], dict[str, dict[str, Any]]]) -> None:
        self.stats = stats
        self.credential_states = credential_states

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily

        requests = CounterMetricFamily(
            "authproxy_requests",
            "Requests by route, method and status class.",
            labels=["route", "method", "status_class"],
        )
        errors = CounterMetricFamily(
            "authproxy_errors",
            "Requests answered with a 5xx (by the proxy or the upstream) or cut off mid-response; "
            "4xx refusals are not errors here (see authproxy_requests_total).",
            labels=["route"],
        )
        retries = CounterMetricFamily(
            "authproxy_401_retries", "Requests resent once after an upstream 401.", labels=["route"]
        )
        in_flight = GaugeMetricFamily("authproxy_in_flight_requests", "Requests being served.", labels=["route"])
        upstream = HistogramMetricFamily(
            "authproxy_upstream_latency_seconds",
            "Time from sending upstream to its response headers.",
            labels=["route"],
        )
        overhead = HistogramMetricFamily(
            "authproxy_proxy_overhead_seconds",
            "Time spent in the proxy itself (before sending, after headers).",
            labels=["route"],
        )
        for name, route in sorted(self.stats.routes.items()):
            for (method, status_class), count in sorted(route.requests.items()):
                requests.add_metric([name, method, status_class], count)
            errors.add_metric([name], route.errors)
            retries.add_metric([name], route.retries_401)
            in_flight.add_metric([name], route.in_flight)
            upstream.add_metric([name], route.upstream.cumulative(), route.upstream.sum)
            overhead.add_metric([name], route.overhead.cumulative(), route.overhead.sum)
        yield from (requests, errors, retries, in_flight, upstream, overhead)

        fetches = CounterMetricFamily(
            "authproxy_token_fetches", "Token requests by route and outcome.", labels=["route", "outcome"]
        )
        expiry = GaugeMetricFamily(
            "authproxy_token_expiry_seconds", "Seconds until the current token expires.", labels=["route"]
        )
        valid = GaugeMetricFamily("authproxy_token_valid", "1 when the route holds a valid token.", labels=["route"])
        states = GaugeMetricFamily(
            "authproxy_token_state",
            "1 for the state each route's credential is in, 0 for the others (credentials/state.py).",
            labels=["route", "state"],
        )
        for name, state in sorted(self.credential_states().items()):
            for outcome, count in sorted(state.get("fetches", {}).items()):
                fetches.add_metric([name, outcome], count)
            if state.get("expires_in") is not None:
                expiry.add_metric([name], state["expires_in"])
            valid.add_metric([name], 1.0 if state.get("valid") else 0.0)
            for known in State:
                states.add_metric([name, known.value], 1.0 if state.get("state") == known.value else 0.0)
        yield from (fetches, expiry, valid, states)


def exposition(collector: Collector) -> tuple[bytes, str]:
    """The text exposition of `collector`; raises ImportError without the `metrics` extra."""
    from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)  # type: ignore[arg-type]
    return generate_latest(registry), CONTENT_TYPE_LATEST
