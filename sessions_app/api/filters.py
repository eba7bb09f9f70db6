"""Session list filters (django-filter). `q` searches title, description, contact and message text.

On PostgreSQL the `UPPER(col) LIKE UPPER('%q%')` that `icontains` produces is served by the pg_trgm
GIN indexes of migration 0002; SQLite runs the same query as a scan (fine for an embedded setup).
"""

from __future__ import annotations

from typing import Any

import django_filters
from django.db.models import Q, QuerySet
from rest_framework.exceptions import ValidationError

from sessions_app.models import ChannelKind, Contact, Message, Session, SessionStatus
from sessions_app.phones import InvalidPhoneNumber, normalize_phone

Q_MIN_LENGTH = 2
Q_MAX_LENGTH = 200


def search_sessions(queryset: QuerySet[Session], text: str) -> QuerySet[Session]:
    text = text.strip()
    if not Q_MIN_LENGTH <= len(text) <= Q_MAX_LENGTH:
        raise ValidationError({"q": [f"Search text must be {Q_MIN_LENGTH} to {Q_MAX_LENGTH} characters."]})
    # One `pk IN (… UNION …)` condition rather than an OR of four: the planner can then pick, by its
    # estimates, between walking the list's index and filtering (a common word: matches are
    # dense) and joining from the few matching ids (a rare word or a phone number), each part an
    # index lookup (migration 0002's trigram indexes).
    in_sessions = (
        Session.objects.filter(Q(title__icontains=text) | Q(description__icontains=text))
        .values("pk")
        .order_by()
    )
    of_contacts = (
        Session.objects.filter(
            contact__in=Contact.objects.filter(
                Q(phone__icontains=text)
                | Q(display_name__icontains=text)
                | Q(whatsapp_profile_name__icontains=text)
                | Q(external_user_id__icontains=text)
            ).values("pk")
        )
        .values("pk")
        .order_by()
    )
    in_messages = Message.objects.filter(content__icontains=text).values("session_id").order_by()
    return queryset.filter(pk__in=in_sessions.union(of_contacts, in_messages))


class SessionFilter(django_filters.FilterSet):
    channel = django_filters.MultipleChoiceFilter(
        field_name="channel_kind", choices=ChannelKind.choices, help_text="Channel kind; repeat for several."
    )
    status = django_filters.MultipleChoiceFilter(
        choices=SessionStatus.choices, help_text="Repeat for several: ?status=active&status=closed"
    )
    contact_phone = django_filters.CharFilter(method="filter_contact_phone", max_length=32)
    contact = django_filters.NumberFilter(field_name="contact_id")
    business_id = django_filters.CharFilter(max_length=128)
    location_id = django_filters.CharFilter(max_length=128)
    owner = django_filters.NumberFilter(field_name="owner_id")
    agent_id = django_filters.CharFilter(max_length=128, help_text="Agent or character id.")
    created = django_filters.IsoDateTimeFromToRangeFilter(
        field_name="created_at", help_text="created_after / created_before (ISO 8601)"
    )
    last_activity = django_filters.IsoDateTimeFromToRangeFilter(
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

    def filter_q(self, queryset: QuerySet[Session], name: str, value: Any) -> QuerySet[Session]:
        return search_sessions(queryset, value)
