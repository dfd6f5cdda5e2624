"""Django settings for the test authorization server: small, fast, loopback only."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

HERE = Path(__file__).resolve().parent

SECRET_KEY = secrets.token_urlsafe(32)
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
USE_TZ = True
ROOT_URLCONF = "tests.oauth_server.urls"
LOGIN_URL = "/accounts/login/"
DEFAULT_AUTO_FIELD = "django.db.models.AutoField"

INSTALLED_APPS = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "oauth2_provider",
]
MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
]
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [HERE / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {"context_processors": ["django.template.context_processors.request"]},
    }
]
DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": os.environ["OAUTH_SERVER_DB"]}}
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]  # test speed; client secrets are hashed too

OAUTH2_PROVIDER = {
    "ACCESS_TOKEN_EXPIRE_SECONDS": int(os.environ.get("OAUTH_SERVER_TOKEN_SECONDS", "60")),
    "ROTATE_REFRESH_TOKEN": True,
    "REFRESH_TOKEN_GRACE_PERIOD_SECONDS": 0,  # a rotated refresh token is dead at once
    "PKCE_REQUIRED": True,
    "SCOPES": {"read": "Read your data", "openid": "OpenID Connect"},
    "DEFAULT_SCOPES": ["read"],
    "OIDC_ENABLED": True,  # serves /o/.well-known/openid-configuration (issuer: the server's URL + /o)
    "DEVICE_FLOW_INTERVAL": 5,
    # RFC 8628: the verification URIs name the bound port, which serve.py sets once it is known
    "OAUTH_DEVICE_VERIFICATION_URI": "",
    "OAUTH_DEVICE_VERIFICATION_URI_COMPLETE": "",
}

LOGGING = {  # server errors to stderr, where the test output shows them
    "version": 1,
    "handlers": {"stderr": {"class": "logging.StreamHandler"}},
    "loggers": {"django.request": {"handlers": ["stderr"], "level": "ERROR"}},
}
