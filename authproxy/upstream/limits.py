"""What an upstream may send before its answer's body, and when its connection may carry another exchange.

Both transports apply the same rules, so a misbehaving upstream (a buggy one, or one that was taken over)
can neither exhaust the proxy nor hand one client's answer to the next:

- The head is bounded: at most `max_head` bytes for all the heads of one answer (interim ones included),
  `max_headers` fields in a head and `max_interim` 1xx answers before the final one. Past any of them the
  exchange fails with `UpstreamBadResponseError` and the connection is closed; nothing past the limit was
  buffered (a 64 MiB header value once grew the proxy by 150 MiB for good; endless `103`s never timed out).
- A connection is used again only after an answer whose end is certain: never after a HEAD, a 204, a 304,
  an interim (1xx) answer or a body delimited by the connection's close. A body sent anyway after such an
  answer would otherwise be read as the answer to the next request on that connection.
- A byte from an idle connection closes it. A second answer that comes after the next request went out on
  that connection cannot be told from that request's answer, though: against that, a released connection
  can rest `rest` seconds before it is handed out again (a byte meanwhile closes it), so a second answer up
  to `rest` late lands on a resting connection. When the limits leave no room for another connection, the
  one that rested longest is taken at once (the rest never makes a request wait). The rest is off by
  default (REST; `limits.connection_rest` sets it): with it, back-to-back requests each need a connection
  of their own until the first has rested (a client sending one request after another keeps about
  `rest` / its interval connections open), so under load the proxy holds many more upstream connections;
  0.5 s is a sensible value where an upstream is not trusted.
"""

from __future__ import annotations

from dataclasses import dataclass

from authproxy.upstream.transport import Endpoint, UpstreamBadResponseError, UpstreamTimeoutError

MAX_HEAD = 64 * 1024
MAX_HEADERS = 100
MAX_INTERIM = 10
REST = 0.0  # seconds; off (see above)
NO_REUSE_AFTER = frozenset((101, 204, 304))  # no body (as HEAD's answer): the upstream may send one anyway


@dataclass(frozen=True, slots=True)
class HeadLimits:
    """The bounds on an answer's head; the errors say which was crossed and where, never a header value."""

    max_head: int = MAX_HEAD
    max_headers: int = MAX_HEADERS
    max_interim: int = MAX_INTERIM

    def __post_init__(self) -> None:
        if min(self.max_head, self.max_headers) < 1 or self.max_interim < 0:
            raise ValueError("head limits must be positive (max_interim may be 0)")

    def head_too_large(self, endpoint: Endpoint) -> UpstreamBadResponseError:
        return UpstreamBadResponseError(
            f"the response head from {endpoint.origin} is larger than {self.max_head} bytes"
        )

    def too_many_headers(self, endpoint: Endpoint) -> UpstreamBadResponseError:
        return UpstreamBadResponseError(
            f"the response head from {endpoint.origin} has more than {self.max_headers} header fields"
        )

    def too_many_interim(self, endpoint: Endpoint) -> UpstreamBadResponseError:
        return UpstreamBadResponseError(
            f"{endpoint.origin} sent more than {self.max_interim} interim (1xx) answers before its answer"
        )


def endpoint_busy(endpoint: Endpoint, waited: float) -> UpstreamTimeoutError:
    """No connection to `endpoint` came free within its own limit in time."""
    what = "the 1 connection" if endpoint.limit == 1 else f"all {endpoint.limit} connections"
    return UpstreamTimeoutError(f"{what} to {endpoint.origin} (the endpoint's limit) stayed busy for {waited:g} s")
