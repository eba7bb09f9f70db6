"""Who is on the other end of a socket, and which topics and events they may see."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.models import AnonymousUser
from django.db.models import QuerySet

from sessions_app.api.keys import looks_like_key, verify_key
from sessions_app.models import Session


@dataclass(frozen=True)
class Principal:
    """Staff see everything; a service key sees its business (or all, if unlimited); a user sees what
    they own."""

    kind: str  # "staff" | "user" | "api_key"
    label: str
    user_id: int | None = None
    username: str = ""
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

    def visible_sessions(self) -> QuerySet[Session]:
        """The sessions this principal may see (the API's scope, for the socket)."""
        sessions = Session.objects.all()
        if self.sees_everything:
            return sessions
        if self.kind == "api_key":
            return sessions.filter(business_id=self.business_id)
        return sessions.filter(owner_id=self.user_id)

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
    name = user.get_username()
    return Principal(kind=kind, label=f"{kind}:{name}", user_id=user.pk, username=name)


def principal_for_token(token: str) -> Principal | None:
    """A user's JWT access token (simplejwt) or a service API key."""
    if not token:
        return None
    if looks_like_key(token):
        key = verify_key(token)
        if key is None:
            return None
        return Principal(kind="api_key", label=f"api-key:{key.name}", business_id=key.business_id or None)
    from rest_framework_simplejwt.exceptions import TokenError
    from rest_framework_simplejwt.settings import api_settings
    from rest_framework_simplejwt.tokens import AccessToken

    try:
        access = AccessToken(token)  # type: ignore[arg-type]
    except TokenError:
        return None
    user = get_user_model().objects.filter(pk=access.get(api_settings.USER_ID_CLAIM)).first()
    return principal_for_user(user)
