"""Free-text search over sessions: one definition of "matches" for every surface that searches.

A term matches a session when it appears in the session's title, its contact's phone number or
names, or the text of any of its messages. Message text is matched with a subquery on messages
(`id IN (SELECT session_id ...)`), so a session with many matching messages is listed once and no
join multiplies rows. At scale that subquery is the expensive part; a full-text index can later
replace its body here without any caller changing.
"""

from __future__ import annotations

import re

from django.db.models import Q, QuerySet

from sessions_app.models import Message, Session

# What people type around the digits of a phone number: "+1 (555) 123-4567".
_PHONE_PUNCTUATION = re.compile(r"[\s().\-]")
_PHONE_LIKE = re.compile(r"^\+?\d{3,}$")


def session_search_q(term: str) -> Q:
    """The condition "`term` matches this session" (see the module docstring)."""
    term = term.strip()
    condition = (
        Q(title__icontains=term)
        | Q(contact__display_name__icontains=term)
        | Q(contact__whatsapp_profile_name__icontains=term)
        | Q(contact__phone__icontains=term)
        | Q(pk__in=Message.objects.filter(content__icontains=term).values("session_id"))
    )
    compact = _PHONE_PUNCTUATION.sub("", term)
    if compact != term and _PHONE_LIKE.match(compact):
        # Stored numbers are E.164, so "+1 (555) 123-4567" must be compared without its spacing.
        condition |= Q(contact__phone__icontains=compact) | Q(title__icontains=compact)
    return condition


def search_sessions(queryset: QuerySet[Session], term: str) -> QuerySet[Session]:
    """`queryset` narrowed to sessions matching `term`; unchanged for an empty term."""
    if not term.strip():
        return queryset
    return queryset.filter(session_search_q(term))
