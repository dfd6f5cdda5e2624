"""Interactive login: the authorization code flow, its CLI, its loopback callback and the proxy's /-/login."""
