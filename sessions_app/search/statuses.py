"""Pages of a session list filtered by several statuses, read as one index range per status.

PostgreSQL 15 cannot read `status IN (a, b) ORDER BY last_activity_at DESC` in order from
`session_status_recent` (status, then last activity): it merges no ordered scans of one index, so it
either sorts every match or walks `session_recent` and drops every newer session of another status
on the way. At a million sessions, a page of abandoned and closed sessions newest first took 637 ms
that way, where one status alone takes 0.2 ms (docs/sweep.md, "Stop 16"); read as one slice per
status and merged here, 12 ms (`.venv/bin/python bench/status_lists.py`). Both lists that offer
several statuses at once (the API's `?status=…&status=…` and the staff page's checkboxes) page
through `SeveralStatuses`.

It wraps the filtered queryset (every filter applied, the statuses included) and offers what the
two paginators call: `order_by`, `filter`, `select_related`, slicing and `count`. A slice in the
order of a status index (last activity or creation, either way round) is one query per status, each
taking the first `stop` rows of its status, merged by (that time, id). Everything else (a count, an
unsliced read, another order) is the plain query.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterator, Sequence
from itertools import islice
from typing import Any, overload

from django.db.models import QuerySet

from sessions_app.models import Session

# The orderings a merged page can be served in, each with the field it merges on and whether newest
# first: the order of `session_status_recent` or of `session_status_created` within one status,
# either way round (DRF's cursor pages backwards by reversing it).
MERGEABLE: dict[tuple[str, ...], tuple[str, bool]] = {
    ("-last_activity_at",): ("last_activity_at", True),
    ("-last_activity_at", "-id"): ("last_activity_at", True),
    ("last_activity_at",): ("last_activity_at", False),
    ("last_activity_at", "id"): ("last_activity_at", False),
    ("-created_at",): ("created_at", True),
    ("-created_at", "-id"): ("created_at", True),
    ("created_at",): ("created_at", False),
    ("created_at", "id"): ("created_at", False),
}


def in_statuses(queryset: QuerySet[Session], statuses: Sequence[str]) -> QuerySet[Session]:
    """`queryset` narrowed to `statuses` (each once, as plain strings)."""
    wanted = list(dict.fromkeys(str(s) for s in statuses))
    return queryset.filter(status=wanted[0]) if len(wanted) == 1 else queryset.filter(status__in=wanted)


class SeveralStatuses:
    """`queryset` (already narrowed to `statuses`) for a paginator, read a page at a time."""

    def __init__(
        self, queryset: QuerySet[Session], statuses: Sequence[str], ordering: Sequence[str] | None = None
    ) -> None:
        self.queryset = queryset
        self.statuses = list(dict.fromkeys(str(s) for s in statuses))
        # As given to `order_by`; until then the model's own ordering.
        model_ordering = tuple(str(field) for field in Session._meta.ordering or ())
        self.ordering = tuple(ordering) if ordering is not None else model_ordering

    @property
    def model(self) -> type[Session]:
        return Session

    @property
    def ordered(self) -> bool:
        return self.queryset.ordered

    def _with(self, queryset: QuerySet[Session], ordering: Sequence[str] | None = None) -> SeveralStatuses:
        return SeveralStatuses(queryset, self.statuses, self.ordering if ordering is None else ordering)

    def order_by(self, *fields: str) -> SeveralStatuses:
        return self._with(self.queryset.order_by(*fields), fields)

    def filter(self, *args: Any, **kwargs: Any) -> SeveralStatuses:
        return self._with(self.queryset.filter(*args, **kwargs))

    def select_related(self, *fields: str) -> SeveralStatuses:
        return self._with(self.queryset.select_related(*fields))

    def count(self) -> int:
        return self.queryset.count()

    def __iter__(self) -> Iterator[Session]:
        return iter(self.queryset)

    @overload
    def __getitem__(self, key: int) -> Session: ...
    @overload
    def __getitem__(self, key: slice) -> list[Session]: ...
    def __getitem__(self, key: int | slice) -> Session | list[Session]:
        ordering = self.ordering
        if not isinstance(key, slice) or key.stop is None or key.step or ordering not in MERGEABLE:
            return self.queryset[key] if isinstance(key, int) else list(self.queryset[key])
        field, newest_first = MERGEABLE[ordering]
        tie_break = (f"-{field}", "-id") if newest_first else (field, "id")
        base = self.queryset.order_by(*tie_break)
        # Each slice holds the first `stop` of its status in the page's order, so the first `stop` of
        # all of them merged are the first `stop` of the whole list.
        slices = [list(base.filter(status=status)[: key.stop]) for status in self.statuses]
        merged = heapq.merge(*slices, key=lambda s: (getattr(s, field), s.pk), reverse=newest_first)
        return list(islice(merged, key.start or 0, key.stop))
