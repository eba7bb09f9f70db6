"""Who is on the other end of a socket, and which topics and events they may see."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.models import AnonymousUser


@dataclass(frozen=True)
class Principal:
    """Staff see everything; a service key sees its business (or all, if unlimited); a user sees what
    they own."""

    kind: str  # "staff" | "user" | "api_key"
    label: str
    user_id: int | None = None
    business_id: str | None = None  # set on business-limited API keys

    @property
    def sees_everything(self) -> bool:
        return self.kind == "staff" or (self.kind == "api_key" and not self.business_id)

    def may_join_business(self, business_id: str) -> bool:
        if self.sees_everything:
            return True
        if self.kind == "api_key":
            return business_id == self.business_id
        return True  # an end user joins, and receives only events of sessions they own

    def may_see(self, business_id: str, owner_id: int | None) -> bool:
        if self.sees_everything:
            return True
        if self.kind == "api_key":
            return business_id == self.business_id
        return owner_id is not None and owner_id == self.user_id


def principal_for_user(user: Any) -> Principal | None:
    if user is None or isinstance(user, AnonymousUser) or not user.is_active:
        return None
    kind = "staff" if user.is_staff else "user"
    return Principal(kind=kind, label=f"{kind}:{user.get_username()}", user_id=user.pk)


def principal_for_token(token: str) -> Principal | None:
    """A user's JWT access token (simplejwt) or a service API key."""
    if not token:
        return None
    from rest_framework_simplejwt.exceptions import TokenError
    from rest_framework_simplejwt.settings import api_settings
    from rest_framework_simplejwt.tokens import AccessToken

    try:
        access = AccessToken(token)  # type: ignore[arg-type]
    except TokenError:
        return _principal_for_api_key(token)
    user = get_user_model().objects.filter(pk=access.get(api_settings.USER_ID_CLAIM)).first()
    return principal_for_user(user)


def _principal_for_api_key(token: str) -> Principal | None:
    return None
