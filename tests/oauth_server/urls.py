"""Login, the OAuth endpoints (/o/authorize/, /o/token/, /o/revoke_token/) and one protected API."""

from __future__ import annotations

from django.contrib.auth.views import LoginView
from django.http import HttpRequest, JsonResponse
from django.urls import include, path
from oauth2_provider.views import ProtectedResourceView


class Hello(ProtectedResourceView):
    """The upstream API: answers only with a valid (unexpired, unrevoked) access token."""

    def get(self, request: HttpRequest, *args: object, **kwargs: object) -> JsonResponse:
        return JsonResponse({"user": request.resource_owner.username})  # type: ignore[attr-defined]


urlpatterns = [
    path("accounts/login/", LoginView.as_view()),
    path("o/", include("oauth2_provider.urls", namespace="oauth2_provider")),
    path("api/hello", Hello.as_view()),
]
