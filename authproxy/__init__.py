"""authproxy: a local authenticating reverse proxy.

Point any HTTP client at http://127.0.0.1:8080/<route>/...; authproxy forwards to the route's
upstream with fresh credentials injected.
"""

__version__ = "0.1.0"
