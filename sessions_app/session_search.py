"""Free-text search over sessions: one definition of "matches" for every surface that searches
(the REST API's `q`, the staff pages' search box).

A term matches a session when it appears in its title or description, its contact's phone number,
names or external id, or the text of any of its messages. "+1 (555) 123-4567" also matches the
E.164 number it spells.

On PostgreSQL the `UPPER(col) LIKE UPPER('%term%')` that `icontains` produces is served by the pg_trgm
GIN indexes of migration 0006; SQLite runs the same queries as scans (fine for an embedded setup).
"""

from __future__ import annotations

import re
from typing import Any

from django.conf import settings
from django.db.models import Exists, OuterRef, Q, QuerySet

from sessions_app.models import Contact, Message, Session

# What people type around the digits of a phone number: "+1 (555) 123-4567".
_PHONE_PUNCTUATION = re.compile(r"[\s().\-]")
_PHONE_LIKE = re.compile(r"^\+?\d{3,}$")


def _spellings(term: str) -> list[str]:
    compact = _PHONE_PUNCTUATION.sub("", term)
    return [term, compact] if compact != term and _PHONE_LIKE.match(compact) else [term]


def search_sessions(queryset: QuerySet[Session], term: str) -> QuerySet[Session]:
    """`queryset` narrowed to the sessions `term` matches; unchanged for an empty term."""
    term = term.strip()
    if not term:
        return queryset
    spellings = _spellings(term)
    contact_match = Q()
    matches_title = Q()
    in_text = Q()
    for text in spellings:
        contact_match |= (
            Q(phone__icontains=text)
            | Q(display_name__icontains=text)
            | Q(whatsapp_profile_name__icontains=text)
            | Q(external_user_id__icontains=text)
        )
        matches_title |= Q(title__icontains=text) | Q(description__icontains=text)
        in_text |= Q(content__icontains=text)
    contacts = Contact.objects.filter(contact_match).values("pk")
    # No single plan is fast for both kinds of search text, and the planner cannot tell them apart
    # inside one query. So probe first (each probe one trigram-index lookup, LIMITed):
    # - rare text (a name, a phone number, an order number): few matching sessions; list them by
    #   primary key and let the page query sort just those;
    # - common text (a frequent word): matches are dense, so walking the list's own index and
    #   checking each session (its title, its contact, EXISTS a matching message of that session,
    #   through the message_thread index) finds a page after a few hundred sessions.
    probes = [
        Session.objects.filter(matches_title).order_by().values_list("pk", flat=True),
        Session.objects.filter(contact__in=contacts).order_by().values_list("pk", flat=True),
        Message.objects.filter(in_text).order_by().values_list("session_id", flat=True),
    ]
    # Above this many matches the text counts as common (a setting so tests can reach both plans).
    limit = getattr(settings, "SESSION_SEARCH_PROBE_LIMIT", 1000)
    ids: set[Any] = set()
    for probe in probes:
        found = list(probe[: limit + 1])
        if len(found) > limit:
            # The redundant `>=` keeps PostgreSQL from turning this EXISTS into a hash of every
            # matching message (seconds for a common word); per session it is one index probe.
            in_messages = Message.objects.filter(
                in_text, session=OuterRef("pk"), session_id__gte=OuterRef("pk")
            )
            return queryset.filter(matches_title | Q(contact__in=contacts) | Q(Exists(in_messages)))
        ids.update(found)
    return queryset.filter(pk__in=ids)
