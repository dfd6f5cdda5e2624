"""One proxied request: access, routing, headers, bodies, the credential flow, websockets, responses."""
