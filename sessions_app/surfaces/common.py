"""Small helpers the seed surfaces share: timestamps as each seed prints them, limits, lookups."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from django.db.models import QuerySet
from django.http import HttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter
from rest_framework.exceptions import NotFound, PermissionDenied, ValidationError

from sessions_app.api import scope
from sessions_app.models import Session


def iso_ms(value: datetime | None) -> str | None:
    """`2025-10-12T10:00:00.000Z` (seed 001)."""
    if value is None:
        return None
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"


def iso_s(value: datetime | None) -> str | None:
    """`2024-01-01T11:30:00Z` (seed 000)."""
    if value is None:
        return None
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_limit(raw: str | None, *, default: int, maximum: int, name: str = "limit") -> int:
    if raw in (None, ""):
        return default
    try:
        value = int(raw)
    except (TypeError, ValueError):
        raise ValidationError({name: ["A whole number is required."]}) from None
    if not 1 <= value <= maximum:
        raise ValidationError({name: [f"Must be between 1 and {maximum}."]})
    return value


def parse_offset(raw: str | None, *, name: str = "offset", maximum: int = 100_000) -> int:
    if raw in (None, ""):
        return 0
    try:
        value = int(raw)
    except (TypeError, ValueError):
        raise ValidationError({name: ["A whole number is required."]}) from None
    if not 0 <= value <= maximum:
        raise ValidationError({name: [f"Must be between 0 and {maximum}."]})
    return value


# A session id in a path: a UUID (anything else answers 404 like an unknown id).
SESSION_ID = OpenApiParameter(
    "session_id", OpenApiTypes.UUID, OpenApiParameter.PATH, description="Session id"
)


def limit_schema(maximum: int) -> dict[str, Any]:
    """The OpenAPI schema of a `limit` query parameter that `parse_limit` reads."""
    return {"type": "integer", "minimum": 1, "maximum": maximum}


def as_uuid(raw: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(str(raw))
    except (TypeError, ValueError):
        return None


def visible_session_or_404(request: Any, raw_id: str, queryset: QuerySet[Session] | None = None) -> Session:
    """The session `raw_id` names among those the caller may see; unknown and foreign look the same."""
    pk = as_uuid(raw_id)
    sessions = queryset if queryset is not None else scope.visible_sessions(request)
    session = sessions.select_related("contact", "channel").filter(pk=pk).first() if pk else None
    if session is None:
        raise NotFound("No session with this id.", code="session_not_found")
    return session


def require_end_user(request: Any) -> Any:
    """Surfaces scoped to one logged-in user (002, 004) are not for API keys."""
    user = scope.end_user(request)
    if user is None:
        raise PermissionDenied("This endpoint acts for a logged-in user: send the user's JWT.")
    return user


def json_null() -> HttpResponse:
    """A 200 with the JSON body `null` ("no session"); DRF would render None as an empty body."""
    return HttpResponse(b"null", content_type="application/json")
