"""Who is calling: API keys (`Bearer sk_…`), end-user JWTs (`Bearer eyJ…`), staff via Django login."""

from __future__ import annotations

from typing import Any

from rest_framework import authentication, exceptions
from rest_framework_simplejwt.authentication import JWTAuthentication

from sessions_app.api.keys import looks_like_key, verify_key
from sessions_app.api.throttling import refuse_if_locked_out
from sessions_app.models import ApiKey


class ApiKeyPrincipal:
    """`request.user` for a call made with an API key: authenticated, not staff, no Django user."""

    is_authenticated = True
    is_anonymous = False
    is_staff = False
    is_superuser = False
    pk = None

    def __init__(self, key: ApiKey) -> None:
        self.key = key

    def get_username(self) -> str:
        return f"api-key:{self.key.name}"

    def __str__(self) -> str:
        return self.get_username()


def _bearer(request: Any) -> str | None:
    header = authentication.get_authorization_header(request).split()
    if len(header) != 2 or header[0].lower() != b"bearer":
        return None
    try:
        return header[1].decode()
    except UnicodeError:
        raise exceptions.AuthenticationFailed("The bearer token is not valid text.") from None


class ApiKeyAuthentication(authentication.BaseAuthentication):
    """First in the chain, so it also refuses addresses locked out for failed authentication."""

    def authenticate(self, request: Any) -> tuple[ApiKeyPrincipal, ApiKey] | None:
        refuse_if_locked_out(request)
        token = _bearer(request)
        if token is None or not looks_like_key(token):
            return None
        key = verify_key(token)
        if key is None:
            raise exceptions.AuthenticationFailed("Unknown or revoked API key.", code="invalid_api_key")
        return ApiKeyPrincipal(key), key

    def authenticate_header(self, request: Any) -> str:
        return 'Bearer realm="api"'


class UserJWTAuthentication(JWTAuthentication):
    """simplejwt, skipping API keys (both are Bearer tokens; keys start with `sk_`)."""

    def authenticate(self, request: Any) -> Any:
        token = _bearer(request)
        if token is not None and looks_like_key(token):
            return None
        return super().authenticate(request)


# OpenAPI security schemes for drf-spectacular (documentation only).
from drf_spectacular.extensions import OpenApiAuthenticationExtension  # noqa: E402


class ApiKeyScheme(OpenApiAuthenticationExtension):
    target_class = "sessions_app.api.authentication.ApiKeyAuthentication"
    name = "apiKey"

    def get_security_definition(self, auto_schema: Any) -> dict[str, str]:
        return {"type": "http", "scheme": "bearer", "description": "An API key: `Bearer sk_…`"}


class UserJWTScheme(OpenApiAuthenticationExtension):
    target_class = "sessions_app.api.authentication.UserJWTAuthentication"
    name = "jwt"

    def get_security_definition(self, auto_schema: Any) -> dict[str, str]:
        return {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}


class WebhookBasicScheme(OpenApiAuthenticationExtension):
    target_class = "sessions_app.surfaces.sessions_webhook.WebhookBasicAuthentication"
    name = "webhookBasic"

    def get_security_definition(self, auto_schema: Any) -> dict[str, str]:
        return {"type": "http", "scheme": "basic"}
