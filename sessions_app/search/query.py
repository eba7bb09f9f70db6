"""Free-text search over sessions: one definition of "matches" for every surface that searches
(the REST API's `q`, the staff pages' search box).

A session matches when every word of the search text is a word of its title or description, of
its contact's names or external user id, or of the text of any of its messages, the last word
possibly only the start of one (as people type: "grace hop" finds "Grace Hopper"); or when the
search text is a run of digits (punctuation and spaces aside) found anywhere in the contact's phone
number. Case does not matter; punctuation separates words ("e-mail" is "e" and "mail"). So "refund"
finds "Refunds", "4242" finds "order #4242", and "+1 (555) 000-4242", "5550004242" or "0004242"
find the contact +15550004242. A last word of one character must be whole (a prefix that short
would match nearly everything).

It is a condition on `sessions_app_session.search_document`, a `tsvector` that triggers keep
current and one GIN index serves (sessions_app/search/document.sql, docs/api.md "Search at
scale"). For one word the planner knows how common it is (the column's statistics), so it walks the
list's own index for a common word and reads the GIN index for a rare one. For several words
it can only multiply their frequencies, which can be wrong by orders of magnitude (walking a
million sessions for words that never occur together), so one bounded probe of the newest
PROBE_ROWS sessions the caller may see decides instead.
"""

from __future__ import annotations

import re

from django.db import connections
from django.db.models import BooleanField, QuerySet
from django.db.models.expressions import RawSQL

from sessions_app.models import Session

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


# Multi-word searches: how many of the newest sessions the probe looks at, and how many matches
# among them make the text common enough to walk the list (at least 2%: a page of 50 within about
# 2,500 sessions). Fewer, and the GIN index is read instead (then matches are few).
PROBE_ROWS = 500
PROBE_HITS = 10


def tsquery(term: str) -> str:
    """The PostgreSQL `tsquery` text for `term` (see the module docstring); "" when it has no word."""
    words = [f"'{word}'" for word in _WORD.findall(term.lower())]
    alternatives = []
    if words:
        if len(words[-1]) > 3:  # quotes included: a last word of two characters or more
            words[-1] += ":*"
        alternatives.append(" & ".join(words))
    digits = _phone_digits(term)
    if digits and [f"'{digits}':*"] != words:
        alternatives.append(f"'{digits}':*")
    return " | ".join(f"({alternative})" for alternative in alternatives)


def search_sessions(queryset: QuerySet[Session], term: str) -> QuerySet[Session]:
    """`queryset` narrowed to the sessions `term` matches; unchanged for an empty term."""
    term = term.strip()
    if not term:
        return queryset
    query = tsquery(term)
    if not query:
        return queryset.none()  # only punctuation: no word to look for
    # The column is not a model field (no ORM read should fetch it), hence raw SQL. The SQL text is
    # constant; the search text travels only as the bound tsquery, which `to_tsquery` folds to a
    # constant, so the planner sees each word's frequency.
    column = f"{connections[queryset.db].ops.quote_name(Session._meta.db_table)}.search_document"
    condition = f"{column} @@ to_tsquery('simple'::regconfig, %s)"
    if " & " not in query:
        return queryset.filter(RawSQL(condition, [query], output_field=BooleanField()))  # noqa: S611
    if _common(queryset, RawSQL(condition, [query], output_field=BooleanField())):  # noqa: S611
        # `IS TRUE` hides the condition from the GIN index: the page walks the list's index.
        walk = RawSQL(f"({condition}) IS TRUE", [query], output_field=BooleanField())  # noqa: S611
        return queryset.filter(walk)
    # Stated twice, the condition looks rarer to the planner (it multiplies the two estimates), so it
    # reads the GIN index rather than walk the list hoping for matches that are not there.
    lookup = RawSQL(f"{condition} AND {condition}", [query, query], output_field=BooleanField())  # noqa: S611
    return queryset.filter(lookup)


def _common(queryset: QuerySet[Session], condition: RawSQL) -> bool:
    """Whether at least PROBE_HITS of the newest PROBE_ROWS sessions of `queryset` match."""
    recent = (
        queryset.order_by("-last_activity_at", "-id")
        .annotate(search_hit=condition)
        .values_list("search_hit", flat=True)[:PROBE_ROWS]
    )
    sql, params = recent.query.sql_with_params()
    with connections[queryset.db].cursor() as cursor:
        # The ORM cannot select from a LIMITed subquery; the subquery itself is the ORM's own SQL.
        cursor.execute(
            f"SELECT count(*) FROM (SELECT 1 FROM ({sql}) recent WHERE recent.search_hit LIMIT %s) hits",  # noqa: S608
            [*params, PROBE_HITS],
        )
        row = cursor.fetchone()
    return bool(row and row[0] >= PROBE_HITS)
