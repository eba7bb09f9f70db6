"""What each report figure means, and its live computation over a range of days (docs/reports.md).

Every figure is attributed to one day in the report's time zone:

- by the day the event happened: `messages_inbound`, `messages_outbound`, `staff_replies` (outbound
  messages with role staff), `abandoned` (transitions into abandoned), `reopened` (transitions into
  active from closed or resolved, whoever made them: staff, an API call or `system:reopen`) and
  `merged` (transitions into merged);
- by the day the session was created (its cohort): `sessions_opened`, `agent_only_sessions`
  (sessions with an agent reply and no staff message), `first_response_seconds` (from the session's
  first inbound message to the first outbound message after it, by the agent or by staff) and
  `resolution_seconds` (from the session's creation to its first transition into resolved or closed).

Durations are whole seconds (rounded down). Their p50 and p90 are PostgreSQL's `percentile_cont`
(linear interpolation) over the sessions' durations, each first put in its bucket (`bucket`): exact
below 1,000 s, three significant digits above (12,345 s counts as 12,300 s, under 1% off). The
buckets are what lets a day's distribution be stored once and merged with other days' (the rollup);
the mean is exact (a sum and a count).

The counts are ORM aggregates; the per-session durations are one SQL statement (lateral lookups per
session, then grouped into buckets), over the sessions the ORM selects.

The queries run with PostgreSQL's JIT off (`SET LOCAL jit = off`, the one other raw statement): their
cost estimates (tens of thousands of per-session lookups) are past `jit_above_cost`, and compiling
took 512 ms of the durations statement's 1,070 ms for one day of 33,000 sessions; a day's whole
computation took 2.7-4.1 s with JIT and 2.0-2.2 s without (docs/reports.md, "Speed": `EXPLAIN
(ANALYZE)` on bench/seed.py's data, and `DATABASE_URL=… .venv/bin/python bench/reports.py`, which
times a day with and without it).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field, fields
from datetime import date, datetime, time, timedelta
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

from django.db import connection, transaction
from django.db.models import Count, Model, Q, QuerySet
from django.db.models.functions import TruncDate

from sessions_app.models import Direction, Message, Role, Session, SessionStatus, StatusChange

ENDED = (SessionStatus.CLOSED, SessionStatus.RESOLVED)  # a resolution; reopened from these
EXACT_BELOW = 1000
PERCENTILES = {"p50": 0.5, "p90": 0.9}
COUNTS = (
    "sessions_opened",
    "messages_inbound",
    "messages_outbound",
    "abandoned",
    "reopened",
    "merged",
    "agent_only_sessions",
    "staff_replies",
)

M = TypeVar("M", bound=Model)


def bucket(seconds: int) -> int:
    """The bucket a duration is counted in: itself below EXACT_BELOW, else cut to 3 significant digits."""
    if seconds < EXACT_BELOW:
        return seconds
    step = 10 ** (len(str(seconds)) - 3)
    return seconds - seconds % step


# The same cut in SQL, for a bigint expression `x` (`%%`: the statement has parameters; a test checks
# the two agree).
BUCKET_SQL = "CASE WHEN {x} < {exact} THEN {x} ELSE {x} - {x} %% (10 ^ (length({x}::text) - 3))::bigint END"


@dataclass(frozen=True)
class Selection:
    """The sessions a report covers: channel kinds (none: all), a business, an owner; or nothing."""

    kinds: tuple[str, ...] = ()
    business_id: str | None = None
    owner_id: int | None = None
    empty: bool = False

    @property
    def fits_rollup(self) -> bool:
        """The rollup is kept per day, channel kind and business; never per owner."""
        return self.owner_id is None

    def apply(self, rows: QuerySet[M], prefix: str = "") -> QuerySet[M]:
        if self.empty:
            return rows.none()
        if self.kinds:
            rows = rows.filter(**{f"{prefix}channel_kind__in": self.kinds})
        if self.business_id is not None:
            rows = rows.filter(**{f"{prefix}business_id": self.business_id})
        if self.owner_id is not None:
            rows = rows.filter(**{f"{prefix}owner_id": self.owner_id})
        return rows


@dataclass
class Distribution:
    """Durations in whole seconds: how many per bucket, their count and exact sum."""

    histogram: dict[int, int] = field(default_factory=dict)
    count: int = 0
    total: int = 0

    def add(self, other: Distribution) -> None:
        for value, n in other.histogram.items():
            self.histogram[value] = self.histogram.get(value, 0) + n
        self.count += other.count
        self.total += other.total

    def percentile(self, fraction: float) -> float | None:
        """`percentile_cont(fraction)` over the bucketed durations (None without any)."""
        if not self.count:
            return None
        rank = fraction * (self.count - 1)
        below, above = math.floor(rank), math.ceil(rank)
        low: int | None = None
        seen = 0
        for value in sorted(self.histogram):
            seen += self.histogram[value]
            if low is None and below < seen:
                low = value
            if above < seen:
                assert low is not None
                return low + (value - low) * (rank - below)
        raise AssertionError("histogram holds fewer durations than its count")

    def as_dict(self) -> dict[str, float | int | None]:
        stats: dict[str, float | int | None] = {
            name: self.percentile(fraction) for name, fraction in PERCENTILES.items()
        }
        stats["mean"] = self.total / self.count if self.count else None
        stats["count"] = self.count
        return stats

    @classmethod
    def stored(cls, histogram: dict[str, int], count: int, total: int) -> Distribution:
        """From the rollup's columns (JSON object keys are strings)."""
        return cls({int(value): n for value, n in histogram.items()}, count, total)

    def for_storage(self) -> dict[str, int]:
        return {str(value): n for value, n in sorted(self.histogram.items())}


@dataclass
class Figures:
    """One period's figures (a day of one channel kind and business, or any sum of those)."""

    sessions_opened: int = 0
    messages_inbound: int = 0
    messages_outbound: int = 0
    abandoned: int = 0
    reopened: int = 0
    merged: int = 0
    agent_only_sessions: int = 0
    staff_replies: int = 0
    first_response: Distribution = field(default_factory=Distribution)
    resolution: Distribution = field(default_factory=Distribution)

    def add(self, other: Figures) -> None:
        for name in COUNTS:
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.first_response.add(other.first_response)
        self.resolution.add(other.resolution)

    def as_dict(self) -> dict[str, Any]:
        return {
            **{name: getattr(self, name) for name in COUNTS},
            "first_response_seconds": self.first_response.as_dict(),
            "resolution_seconds": self.resolution.as_dict(),
        }


assert {f.name for f in fields(Figures)} == {*COUNTS, "first_response", "resolution"}

Key = tuple[date, str, str]  # (day, channel kind, business id)


def start_of(day: date, tz: ZoneInfo) -> datetime:
    """Midnight of `day` in `tz` (a day across a DST change is 23 or 25 hours long)."""
    return datetime.combine(day, time.min, tzinfo=tz)


def days_between(first: date, last: date) -> list[date]:
    return [first + timedelta(days=i) for i in range((last - first).days + 1)]


def live_figures(first: date, last: date, tz: ZoneInfo, selection: Selection) -> dict[Key, Figures]:
    """The figures of the days `first` to `last` (inclusive, in `tz`) per day, channel kind and
    business, computed from the sessions, messages and status changes themselves."""
    result: dict[Key, Figures] = {}
    if selection.empty or last < first:
        return result
    with transaction.atomic():
        without_jit()
        _collect(result, start_of(first, tz), start_of(last + timedelta(days=1), tz), tz, selection)
    # Groups with nothing in them (a day with only archived transitions, say) are left out.
    return {key: figures for key, figures in result.items() if _any(figures)}


def without_jit() -> None:
    """Turn PostgreSQL's JIT compilation off until the current transaction ends (module docstring)."""
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL jit = off")


def _collect(
    result: dict[Key, Figures], low: datetime, high: datetime, tz: ZoneInfo, selection: Selection
) -> None:
    def at(key: Key) -> Figures:
        return result.setdefault(key, Figures())

    sessions = selection.apply(Session.objects.filter(created_at__gte=low, created_at__lt=high))
    for day, kind, business, n in (
        sessions.annotate(day=TruncDate("created_at", tzinfo=tz))
        .order_by()
        .values_list("day", "channel_kind", "business_id")
        .annotate(n=Count("pk"))
    ):
        at((day, kind, business)).sessions_opened = n

    messages = selection.apply(Message.objects.filter(created_at__gte=low, created_at__lt=high), "session__")
    outbound = Q(direction=Direction.OUTBOUND)
    for day, kind, business, inbound, out, staff in (
        messages.annotate(day=TruncDate("created_at", tzinfo=tz))
        .order_by()
        .values_list("day", "session__channel_kind", "session__business_id")
        .annotate(
            inbound=Count("pk", filter=Q(direction=Direction.INBOUND)),
            outbound=Count("pk", filter=outbound),
            staff=Count("pk", filter=outbound & Q(role=Role.STAFF)),
        )
    ):
        figures = at((day, kind, business))
        figures.messages_inbound, figures.messages_outbound, figures.staff_replies = inbound, out, staff

    changes = selection.apply(
        StatusChange.objects.filter(created_at__gte=low, created_at__lt=high), "session__"
    )
    for day, kind, business, abandoned, reopened, merged in (
        changes.annotate(day=TruncDate("created_at", tzinfo=tz))
        .order_by()
        .values_list("day", "session__channel_kind", "session__business_id")
        .annotate(
            abandoned=Count("pk", filter=Q(to_status=SessionStatus.ABANDONED)),
            reopened=Count("pk", filter=Q(to_status=SessionStatus.ACTIVE, from_status__in=ENDED)),
            merged=Count("pk", filter=Q(to_status=SessionStatus.MERGED)),
        )
    ):
        figures = at((day, kind, business))
        figures.abandoned, figures.reopened, figures.merged = abandoned, reopened, merged

    for day, kind, business, metric, value, n, total in _session_durations(sessions, tz):
        figures = at((day, kind, business))
        if metric == "agent_only":
            figures.agent_only_sessions = n
            continue
        distribution = figures.first_response if metric == "first_response" else figures.resolution
        distribution.histogram[value] = n
        distribution.count += n
        distribution.total += total


def _any(figures: Figures) -> bool:
    return any(getattr(figures, name) for name in COUNTS) or bool(
        figures.first_response.count or figures.resolution.count
    )


_DURATIONS_SQL = """
WITH cohort AS ({cohort}),
per_session AS (
    SELECT c.day, c.channel_kind, c.business_id,
        (SELECT floor(extract(epoch FROM reply.created_at - thread.first_in))::bigint
           FROM {message} reply
          WHERE reply.session_id = c.id AND reply.direction = %s
            AND reply.role IN (%s, %s) AND reply.created_at > thread.first_in
          ORDER BY reply.created_at LIMIT 1) AS first_response,
        (SELECT floor(extract(epoch FROM min(change.created_at) - c.created_at))::bigint
           FROM {status_change} change
          WHERE change.session_id = c.id AND change.to_status IN (%s, %s)) AS resolution,
        thread.agent AND NOT thread.staff AS agent_only
      FROM cohort c
      -- One pass over the session's messages for its first inbound one and who wrote (an aggregate
      -- without GROUP BY: one row, also for a session without messages).
      CROSS JOIN LATERAL (
          SELECT min(m.created_at) FILTER (WHERE m.direction = %s) AS first_in,
                 coalesce(bool_or(m.direction = %s AND m.role = %s), false) AS agent,
                 coalesce(bool_or(m.role = %s), false) AS staff
            FROM {message} m WHERE m.session_id = c.id
      ) thread
)
SELECT day, channel_kind, business_id, 'first_response', {first_response_bucket},
       count(*), sum(first_response)::bigint
  FROM per_session WHERE first_response IS NOT NULL GROUP BY 1, 2, 3, 5
UNION ALL
SELECT day, channel_kind, business_id, 'resolution', {resolution_bucket}, count(*), sum(resolution)::bigint
  FROM per_session WHERE resolution >= 0 GROUP BY 1, 2, 3, 5
UNION ALL
SELECT day, channel_kind, business_id, 'agent_only', 0, count(*), 0
  FROM per_session WHERE agent_only GROUP BY 1, 2, 3
"""


def _session_durations(sessions: QuerySet[Session], tz: ZoneInfo) -> Iterable[tuple[Any, ...]]:
    """(day, kind, business, metric, bucket, sessions, total seconds) for the sessions' cohort figures.

    Raw SQL: per session, one lateral pass over its messages (its first inbound one, whether agent
    or staff wrote) and correlated lookups of the first reply after it and of its first resolution,
    all on the `message_thread` and `status_change_session` indexes (three lookups a session; the
    four separate message lookups before read 37% more buffers and cost 15% more backend CPU on
    bench/seed.py's data, docs/reports.md); the ORM cannot group on such a derived
    table. The sessions themselves are the ORM's own query, embedded as the `cohort` CTE, so the
    selection's filters are written once (in `Selection.apply`)."""
    cohort = (
        sessions.annotate(day=TruncDate("created_at", tzinfo=tz))
        .order_by()
        .values("id", "created_at", "channel_kind", "business_id", "day")
    )
    cohort_sql, cohort_params = cohort.query.sql_with_params()
    quote = connection.ops.quote_name
    sql = _DURATIONS_SQL.format(
        cohort=cohort_sql,
        message=quote(Message._meta.db_table),
        status_change=quote(StatusChange._meta.db_table),
        first_response_bucket=BUCKET_SQL.format(x="first_response", exact=EXACT_BELOW),
        resolution_bucket=BUCKET_SQL.format(x="resolution", exact=EXACT_BELOW),
    )
    inbound, outbound = str(Direction.INBOUND), str(Direction.OUTBOUND)
    agent, staff = str(Role.AGENT), str(Role.STAFF)
    # In the order the placeholders appear: the cohort's, then the lookups'.
    params = [
        *cohort_params,
        *(outbound, agent, staff),
        *(str(SessionStatus.CLOSED), str(SessionStatus.RESOLVED)),
        *(inbound, outbound, agent, staff),
    ]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall()
