"""Session list filters (django-filter). `q` searches title, description, contact and message text
through the shared `sessions_app.search.query` (what matches and how it stays fast: docs/api.md).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC
from typing import Any

import django_filters
from django import forms
from django.db.models import QuerySet
from drf_spectacular.utils import extend_schema_field
from rest_framework.exceptions import ValidationError
from rest_framework.filters import OrderingFilter

from sessions_app.models import ChannelKind, Session, SessionStatus
from sessions_app.phones import InvalidPhoneNumber, normalize_phone
from sessions_app.search import query as session_search
from sessions_app.search.statuses import in_statuses

Q_MIN_LENGTH = 2
Q_MAX_LENGTH = 200


def search_sessions(queryset: QuerySet[Session], text: str) -> QuerySet[Session]:
    """The API's `q`: the length checked here, the matching in `sessions_app.search.query`."""
    text = text.strip()
    if not Q_MIN_LENGTH <= len(text) <= Q_MAX_LENGTH:
        raise ValidationError({"q": [f"Search text must be {Q_MIN_LENGTH} to {Q_MAX_LENGTH} characters."]})
    return session_search.search_sessions(queryset, text)


@extend_schema_field({"type": "integer", "minimum": 1, "maximum": 2**63 - 1})
class IdFilter(django_filters.NumberFilter):
    """A row id: a whole number within the database's integer range (not a decimal, not 9e18)."""

    field_class = forms.IntegerField

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("min_value", 1)
        kwargs.setdefault("max_value", 2**63 - 1)
        super().__init__(*args, **kwargs)


class UtcDateTimeRangeFilter(django_filters.IsoDateTimeFromToRangeFilter):
    """ISO 8601 bounds, turned into UTC before they reach the database: PostgreSQL refuses some
    offsets Python accepts (schemathesis sent +17:07 and got a 500)."""

    def filter(self, qs: QuerySet[Any], value: Any) -> QuerySet[Any]:
        if value:
            try:
                start = value.start.astimezone(UTC) if value.start else None
                stop = value.stop.astimezone(UTC) if value.stop else None
            except (OverflowError, ValueError):
                raise ValidationError({self.field_name: ["Date/time out of range."]}) from None
            value = slice(start, stop)
        return super().filter(qs, value)


class SessionFilter(django_filters.FilterSet):
    # distinct=False: both are columns of the session row (no join, so no duplicates), and the
    # SELECT DISTINCT that django-filter adds by default can make PostgreSQL sort every matching
    # session instead of walking an index (0.5-1 s at a million sessions).
    channel = django_filters.MultipleChoiceFilter(
        field_name="channel_kind",
        choices=ChannelKind.choices,
        distinct=False,
        help_text="Channel kind; repeat for several.",
    )
    status = django_filters.MultipleChoiceFilter(
        choices=SessionStatus.choices,
        distinct=False,
        method="filter_status",
        help_text="Repeat for several: ?status=active&status=closed",
    )
    contact_phone = django_filters.CharFilter(method="filter_contact_phone", max_length=32)
    contact = IdFilter(field_name="contact_id")
    business_id = django_filters.CharFilter(max_length=128)
    location_id = django_filters.CharFilter(max_length=128)
    owner = IdFilter(field_name="owner_id")
    agent_id = django_filters.CharFilter(max_length=128, help_text="Agent or character id.")
    created = UtcDateTimeRangeFilter(
        field_name="created_at", help_text="created_after / created_before (ISO 8601)"
    )
    last_activity = UtcDateTimeRangeFilter(
        field_name="last_activity_at", help_text="last_activity_after / last_activity_before (ISO 8601)"
    )
    q = django_filters.CharFilter(method="filter_q", max_length=Q_MAX_LENGTH, help_text="Search text.")

    class Meta:
        model = Session
        fields: list[str] = []

    def filter_contact_phone(self, queryset: QuerySet[Session], name: str, value: str) -> QuerySet[Session]:
        try:
            phone = normalize_phone(value)
        except InvalidPhoneNumber as exc:
            raise ValidationError({"contact_phone": [str(exc)]}) from None
        return queryset.filter(contact__phone=phone)

    def filter_status(self, queryset: QuerySet[Session], name: str, value: list[str]) -> QuerySet[Session]:
        # Several statuses: the view reads a page as one index range per status (SeveralStatuses).
        return in_statuses(queryset, value)

    @extend_schema_field(
        {
            "type": "string",
            "minLength": Q_MIN_LENGTH,
            "maxLength": Q_MAX_LENGTH,
            "description": "Search text (docs/api.md, Search at scale).",
        }
    )
    def filter_q(self, queryset: QuerySet[Session], name: str, value: Any) -> QuerySet[Session]:
        return search_sessions(queryset, value)


class SessionOrdering(OrderingFilter):
    """`?ordering=`, and when a list names none: newest first by creation for a creation range
    (`created_after`/`created_before`), by last activity otherwise.

    A creation range in activity order has no index to read in order (one column filtered, another
    sorted): at a million sessions, half of them in range, a page took 666 ms, against 25 ms in
    creation order (docs/sweep.md, "Stop 18")."""

    def get_default_ordering(self, view: Any) -> Sequence[str] | None:
        params = view.request.query_params
        if params.get("created_after") or params.get("created_before"):
            return ["-created_at"]
        return super().get_default_ordering(view)
