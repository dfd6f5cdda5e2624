"""Set up and serve the test authorization server: `python -m tests.oauth_server.serve REDIRECT_URI`.

Creates the sqlite schema, user `alice` (password `wonderland`), a confidential application
(authorization code, PKCE required, refresh tokens rotate) registered for REDIRECT_URI and a
confidential device-code application (RFC 8628), then serves on a free 127.0.0.1 port and prints
one JSON line: {"url", "client_id", "client_secret", "device_client_id", "device_client_secret"}.
OpenID Connect is on, so `URL/o/.well-known/openid-configuration` is its discovery document.
One request at a time: sqlite and concurrent writers do not mix, and the tests need no more.
"""

from __future__ import annotations

import json
import os
import secrets
import sys
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.oauth_server.settings")


class QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # keep the test output clean
        pass


def main(redirect_uri: str) -> None:
    import django

    django.setup()
    from django.contrib.auth import get_user_model
    from django.core.management import call_command
    from django.core.wsgi import get_wsgi_application
    from oauth2_provider.models import Application

    call_command("migrate", verbosity=0)
    user = get_user_model().objects.create_user("alice", password="wonderland")
    client_secret = secrets.token_urlsafe(24)
    app = Application.objects.create(
        name="authproxy-test",
        user=user,
        client_type=Application.CLIENT_CONFIDENTIAL,
        authorization_grant_type=Application.GRANT_AUTHORIZATION_CODE,
        redirect_uris=redirect_uri,
        client_secret=client_secret,  # hashed on save; this process keeps the plain one to print
        skip_authorization=False,
    )
    device_secret = secrets.token_urlsafe(24)
    device_app = Application.objects.create(  # RFC 8628: a device (no redirect), a confidential client
        name="authproxy-device",
        user=user,
        client_type=Application.CLIENT_CONFIDENTIAL,
        authorization_grant_type=Application.GRANT_DEVICE_CODE,
        client_secret=device_secret,
    )
    httpd = make_server("127.0.0.1", 0, get_wsgi_application(), server_class=WSGIServer, handler_class=QuietHandler)
    url = f"http://127.0.0.1:{httpd.server_port}"
    from django.conf import settings
    from oauth2_provider.settings import oauth2_settings

    settings.OAUTH2_PROVIDER["OAUTH_DEVICE_VERIFICATION_URI"] = f"{url}/o/device/"
    settings.OAUTH2_PROVIDER["OAUTH_DEVICE_VERIFICATION_URI_COMPLETE"] = f"{url}/o/device/?user_code={{user_code}}"
    oauth2_settings.reload()
    print(
        json.dumps(
            {
                "url": url,
                "client_id": app.client_id,
                "client_secret": client_secret,
                "device_client_id": device_app.client_id,
                "device_client_secret": device_secret,
            }
        ),
        flush=True,
    )
    httpd.serve_forever()


if __name__ == "__main__":
    main(sys.argv[1])
