"""Free-text search over sessions: one definition of "matches" for every surface that searches.

A term matches a session when it appears in the session's title, its contact's phone number or
names, or the text of any of its messages. Contacts and messages are matched by EXISTS subqueries,
so a session with many matching messages is listed once, and a narrow outer query (the live-update
poll: a few seconds of activity) probes only its own sessions' rows through their indexes. A search
over the whole table still scans titles, contacts and messages with ILIKE; a trigram or full-text
index can later replace the body of `session_search_q` without any caller changing.
"""

from __future__ import annotations

import re

from django.db.models import Exists, OuterRef, Q, QuerySet

from sessions_app.models import Contact, Message, Session

# What people type around the digits of a phone number: "+1 (555) 123-4567".
_PHONE_PUNCTUATION = re.compile(r"[\s().\-]")
_PHONE_LIKE = re.compile(r"^\+?\d{3,}$")


def session_search_q(term: str) -> Q:
    """The condition "`term` matches this session" (see the module docstring)."""
    term = term.strip()
    contact_match = (
        Q(display_name__icontains=term) | Q(whatsapp_profile_name__icontains=term) | Q(phone__icontains=term)
    )
    compact = _PHONE_PUNCTUATION.sub("", term)
    phone_like = compact != term and _PHONE_LIKE.match(compact)
    if phone_like:
        # Stored numbers are E.164, so "+1 (555) 123-4567" must be compared without its spacing.
        contact_match |= Q(phone__icontains=compact)
    # Contacts and messages as EXISTS subqueries, not joins: PostgreSQL then either scans each table
    # once (hashed, for a whole-table search) or probes by key (for a narrow outer query such as
    # the live-update poll), and no session is listed twice.
    condition = (
        Q(title__icontains=term)
        | Q(Exists(Contact.objects.filter(contact_match, pk=OuterRef("contact_id"))))
        | Q(Exists(Message.objects.filter(session_id=OuterRef("pk"), content__icontains=term)))
    )
    if phone_like:
        condition |= Q(title__icontains=compact)
    return condition


def search_sessions(queryset: QuerySet[Session], term: str) -> QuerySet[Session]:
    """`queryset` narrowed to sessions matching `term`; unchanged for an empty term."""
    if not term.strip():
        return queryset
    return queryset.filter(session_search_q(term))
