"""A token endpoint whose URL comes from `auth.issuer`: resolved before the first token request.

The config is valid without a token_url when an issuer is set; this stands in for the route's
`TokenEndpoint` and asks the app's `DiscoveryCache` on every request (a dictionary look-up once
the document is in), so a reload, which empties the cache, makes the next request fetch it again.
A failed discovery is a transient token failure with the code `discovery_failed`: the credential
backs off and retries like after any failing token request, and `/-/status` shows the URL and why.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping

import structlog

from authproxy.config.schema import AuthConfig, RouteConfig
from authproxy.credentials.discovery import DiscoveryCache, DiscoveryError
from authproxy.credentials.endpoint import TokenEndpoint
from authproxy.credentials.tokens import Token
from authproxy.errors import ConfigError, TokenEndpointError
from authproxy.upstream.egress import EgressPolicy
from authproxy.upstream.transport import Transport

log = structlog.get_logger("authproxy.credentials")

DISCOVERY_FAILED = "discovery_failed"


class DiscoveredEndpoint:
    """Duck-types `TokenEndpoint.request` (what the grants call) over a discovered `TokenEndpoint`."""

    def __init__(
        self,
        route: RouteConfig,
        cache: DiscoveryCache,
        transport: Transport,
        make: Callable[[RouteConfig], TokenEndpoint],
        *,
        egress: EgressPolicy | None = None,
    ) -> None:
        self._route, self._cache, self._transport, self._make = route, cache, transport, make
        self._egress = egress  # the route's egress proxy rules: the metadata document is fetched through them too
        self._built: tuple[AuthConfig, TokenEndpoint] | None = None

    async def current(self) -> TokenEndpoint:
        """The token endpoint as the (cached) metadata says; TokenEndpointError `discovery_failed` if unknown."""
        try:
            discovery = await self._cache.resolve(self._route, self._transport, self._egress)
        except DiscoveryError as exc:
            raise TokenEndpointError(exc.message, oauth_error=DISCOVERY_FAILED) from None
        if self._built is None or self._built[0] != discovery.auth:
            routed = self._route
            try:
                endpoint = self._make(dataclasses.replace(routed, auth=discovery.auth))
            except ConfigError as err:
                problems = "; ".join(f"{path}: {msg}" for path, msg in err.problems)
                raise TokenEndpointError(
                    f"discovery at {discovery.url}: {problems}", oauth_error=DISCOVERY_FAILED
                ) from None
            self._built = (discovery.auth, endpoint)
            for finding in discovery.findings:
                level = log.warning if finding.kind == "unsupported" else log.info
                level("discovered", route=routed.name, url=discovery.url, finding=finding.kind, detail=finding.message)
        return self._built[1]

    async def request(
        self, grant_type: str, params: Mapping[str, str], *, previous_refresh: str | None = None
    ) -> Token:
        endpoint = await self.current()
        return await endpoint.request(grant_type, params, previous_refresh=previous_refresh)
