"""A real OAuth 2 authorization server for the end-to-end login test: Django + django-oauth-toolkit.

`python -m tests.oauth_server.serve` sets it up (sqlite in a temp dir, a user, an application
with authorization code + PKCE and refresh-token rotation) and serves it on a free loopback
port; see serve.py. Test-only: never used by authproxy itself.
"""
