"""What a caller may see: the one place that scopes querysets for every API surface.

- staff (Django login or a staff JWT): everything;
- an API key: everything, or one business's sessions if the key is limited to it;
- anyone else (an end user's JWT): the sessions they own.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.db.models import Exists, OuterRef, QuerySet
from rest_framework.exceptions import PermissionDenied

from sessions_app.api.authentication import ApiKeyPrincipal
from sessions_app.models import Channel, Contact, Session


def api_key_of(request: Any) -> Any:
    user = request.user
    return user.key if isinstance(user, ApiKeyPrincipal) else None


def is_staff(request: Any) -> bool:
    return bool(getattr(request.user, "is_staff", False)) and api_key_of(request) is None


def end_user(request: Any) -> Any:
    """The Django user behind the request (JWT or login), or None for an API key."""
    return None if api_key_of(request) is not None else request.user


def actor(request: Any) -> str:
    key = api_key_of(request)
    if key is not None:
        return f"api-key:{key.name}"
    return f"{'staff' if is_staff(request) else 'user'}:{request.user.get_username()}"


@dataclass(frozen=True)
class Visibility:
    """Which sessions a caller sees, as data: all of them, one business's, or one owner's.

    The reports need it as data (their daily rollup is kept per business, never per owner); every
    queryset is narrowed by `apply`, so the rule stays here."""

    business_id: str | None = None
    owner_id: int | None = None

    def apply(self, sessions: QuerySet[Session]) -> QuerySet[Session]:
        if self.owner_id is not None:
            sessions = sessions.filter(owner_id=self.owner_id)
        if self.business_id is not None:
            sessions = sessions.filter(business_id=self.business_id)
        return sessions


def visibility(request: Any) -> Visibility:
    if is_staff(request):
        return Visibility()
    key = api_key_of(request)
    if key is not None:
        return Visibility(business_id=key.business_id or None)
    return Visibility(owner_id=request.user.pk)


def visible_sessions(request: Any) -> QuerySet[Session]:
    return visibility(request).apply(Session.objects.all())


def check_business(request: Any, business_id: str) -> None:
    """Refuse writing into a business a limited API key is not limited to."""
    key = api_key_of(request)
    if key is not None and key.business_id and business_id != key.business_id:
        raise PermissionDenied(f"This API key is limited to business {key.business_id!r}.")


def visible_contacts(request: Any) -> QuerySet[Contact]:
    if is_staff(request):
        return Contact.objects.all()
    return Contact.objects.filter(Exists(visible_sessions(request).filter(contact=OuterRef("pk")).order_by()))


def visible_channels(request: Any) -> QuerySet[Channel]:
    if is_staff(request):
        return Channel.objects.all()
    return Channel.objects.filter(Exists(visible_sessions(request).filter(channel=OuterRef("pk")).order_by()))
