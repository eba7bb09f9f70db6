"""Free-text search over sessions: one definition of "matches" for every surface that searches
(the REST API's `q`, the staff pages' search box).

A session matches when every word of the search text starts a word of its title or description,
of its contact's names or external user id, or of the text of any of its messages; or when the
search text is a run of digits (punctuation and spaces aside) found anywhere in the contact's phone
number. Case does not matter; punctuation separates words ("e-mail" is "e" and "mail"). So "refund"
finds "Refunds", "lovelace" finds "Ada Lovelace", "grace hop" finds "Grace Hopper", "4242" finds
"order #4242", and "+1 (555) 000-4242", "5550004242" or "0004242" find the contact +15550004242.
A word of one character must be a whole word (a prefix that short would match nearly everything).

On PostgreSQL this is one condition on `sessions_app_session.search_document`, a `tsvector` that
triggers keep current and one GIN index serves (migration 0007_search, docs/api.md "Search at
scale"). The planner knows how common each word is (the column's statistics), so it walks the
list's own index for a common word and reads the index for a rare one. SQLite runs `icontains`
over the same fields (substring matching; fine at embedded sizes).
"""

from __future__ import annotations

import re

from django.db import connections
from django.db.models import BooleanField, Exists, OuterRef, Q, QuerySet
from django.db.models.expressions import RawSQL

from sessions_app.models import Contact, Message, Session

# What people type around the digits of a phone number: "+1 (555) 123-4567".
_PHONE_PUNCTUATION = re.compile(r"[\s().\-]")
_PHONE_LIKE = re.compile(r"^\+?\d{3,}$")
# A word as the document's function `session_search_words` cuts text: letters and digits; anything
# else (punctuation, "_", spaces) separates words.
_WORD = re.compile(r"[^\W_]+")


def _phone_digits(term: str) -> str:
    """The digits of `term` if it looks like (part of) a phone number, else ""."""
    compact = _PHONE_PUNCTUATION.sub("", term)
    return compact.lstrip("+") if _PHONE_LIKE.match(compact) else ""


def tsquery(term: str) -> str:
    """The PostgreSQL `tsquery` text for `term` (see the module docstring); "" when it has no word."""
    words = _WORD.findall(term.lower())
    alternatives = []
    if words:
        alternatives.append(" & ".join(f"'{word}':*" if len(word) > 1 else f"'{word}'" for word in words))
    digits = _phone_digits(term)
    if digits and [digits] != words:
        alternatives.append(f"'{digits}':*")
    return " | ".join(f"({alternative})" for alternative in alternatives)


def search_sessions(queryset: QuerySet[Session], term: str) -> QuerySet[Session]:
    """`queryset` narrowed to the sessions `term` matches; unchanged for an empty term."""
    term = term.strip()
    if not term:
        return queryset
    if connections[queryset.db].vendor == "postgresql":
        return _search_document(queryset, term)
    return _search_substring(queryset, term)


def _search_document(queryset: QuerySet[Session], term: str) -> QuerySet[Session]:
    query = tsquery(term)
    if not query:
        return queryset.none()  # only punctuation: no word to look for
    # The column is not a model field (no ORM read should fetch it), hence raw SQL. The tsquery is
    # a bound value that `to_tsquery` folds to a constant, so the planner sees each word's frequency.
    column = f"{connections[queryset.db].ops.quote_name(Session._meta.db_table)}.search_document"
    # The SQL text is constant; the user's text travels only as the bound parameter.
    matches = RawSQL(  # noqa: S611
        f"{column} @@ to_tsquery('simple'::regconfig, %s)", [query], output_field=BooleanField()
    )
    return queryset.filter(matches)


def _search_substring(queryset: QuerySet[Session], term: str) -> QuerySet[Session]:
    spellings = [term]
    digits = _phone_digits(term)
    if digits and digits != term:
        spellings.append(digits)
    contact_match = Q()
    own_match = Q()
    in_text = Q()
    for text in spellings:
        contact_match |= (
            Q(phone__icontains=text)
            | Q(display_name__icontains=text)
            | Q(whatsapp_profile_name__icontains=text)
            | Q(external_user_id__icontains=text)
        )
        own_match |= Q(title__icontains=text) | Q(description__icontains=text)
        in_text |= Q(content__icontains=text)
    contacts = Contact.objects.filter(contact_match).values("pk")
    in_messages = Message.objects.filter(in_text, session=OuterRef("pk"))
    return queryset.filter(own_match | Q(contact__in=contacts) | Q(Exists(in_messages)))
