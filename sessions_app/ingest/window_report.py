"""The what-if window report: how many sessions other reuse windows would have made of a channel's history.

For each window, per contact: one session, plus one for every gap between consecutive inbound
messages longer than the window (the reuse rule's `>`: a gap of exactly the window joins). Beside
it, the gaps themselves, counted in fixed buckets. One statement in the database: `lag()` over the
channel's inbound messages per contact gives every gap, ranked against every threshold at once.
Finished UTC days come from a daily rollup (`roll_up`, run by the scheduler) when the period starts
at a midnight; the rest is replayed from the messages (docs/session-boundaries.md; measured with
`.venv/bin/python bench/window_report.py`: about 1 s at 5,000,000 messages).

It replays inbound messages only, as the issue defines it; the live rule measures a gap from the
session's last message of either direction (an agent's reply keeps a session going), so the live
count under the same window can be lower. Merged sessions hold no messages, split ones hold theirs:
the replay reads messages, whatever sessions they are in now.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from django.db import connection, transaction
from django.db.models import Exists, OuterRef
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from sessions_app.models import (
    Channel,
    Direction,
    Message,
    Session,
    WindowRollupDay,
    WindowRollupGaps,
    WindowRollupState,
)

# Upper bounds (seconds, inclusive) of the gap histogram's buckets; one more bucket holds the longer
# gaps (`upper_seconds` null). The first bucket starts at 0 (two messages of the same instant).
GAP_BUCKETS: tuple[int, ...] = (
    10,
    30,
    60,
    120,
    300,
    600,
    900,
    1800,
    3600,
    2 * 3600,
    6 * 3600,
    12 * 3600,
    86400,
    7 * 86400,
)
DEFAULT_WINDOWS: tuple[int, ...] = (60, 300, 900)
MAX_WINDOWS = 20
MAX_WINDOW_SECONDS = 30 * 86400
DEFAULT_PERIOD = timedelta(days=30)
# The sort behind `lag()` stays in memory up to a few million gaps instead of spilling to disk.
WORK_MEM = "256MB"


@dataclass(frozen=True)
class WindowCount:
    seconds: int
    sessions: int


@dataclass(frozen=True)
class GapBucket:
    upper_seconds: int | None
    count: int


@dataclass(frozen=True)
class WindowReport:
    windows: list[WindowCount]
    gaps: list[GapBucket]
    contacts: int
    messages: int

    def as_dict(self) -> dict[str, list[dict[str, int | None]]]:
        """The API's shape: {"windows": [{"seconds", "sessions"}], "gaps": [{"upper_seconds", "count"}]}."""
        return {
            "windows": [{"seconds": w.seconds, "sessions": w.sessions} for w in self.windows],
            "gaps": [{"upper_seconds": g.upper_seconds, "count": g.count} for g in self.gaps],
        }

    def sessions_at(self, seconds: int) -> int:
        """Sessions under a window of `seconds` that is a bucket bound (or 0), from the histogram alone."""
        longer = 0
        for bucket in self.gaps:
            if bucket.upper_seconds is None or bucket.upper_seconds > seconds:
                longer += bucket.count
        return self.contacts + longer


# Every gap of the channel's inbound messages per contact (NULL for a contact's first in the period),
# as the number of thresholds at least as long (`width_bucket` over the thresholds negated, in
# ascending order), counted per such number: one small group-by instead of a comparison per
# threshold per row. `date_part` gives the seconds as float8 (`extract` would build numerics).
_STATEMENT = """
SELECT width_bucket(-date_part('epoch', created_at - previous), %s::float8[]) AS longer_than, count(*)
FROM (
    SELECT m.created_at, lag(m.created_at) OVER (PARTITION BY s.contact_id ORDER BY m.created_at) AS previous
    FROM {message} m JOIN {session} s ON s.id = m.session_id
    WHERE s.channel_id = %s AND s.contact_id IS NOT NULL AND m.direction = %s
      AND m.created_at >= %s AND m.created_at < %s
) gaps
GROUP BY 1
"""


def statement() -> str:
    """The report's one statement (its parameters: `statement_params`)."""
    return _STATEMENT.format(message=Message._meta.db_table, session=Session._meta.db_table)


def thresholds(windows: Sequence[int]) -> list[int]:
    """Every length a gap is compared with: the windows asked for and the histogram's bounds."""
    return sorted({*GAP_BUCKETS, *(int(w) for w in windows)})


def statement_params(channel: Channel, windows: Sequence[int], since: datetime, until: datetime) -> list[Any]:
    negated = [-float(t) for t in reversed(thresholds(windows))]
    return [negated, channel.pk, str(Direction.INBOUND), since, until]


# The same counts from the daily rollup for the finished days of the period (the period starting at
# a UTC midnight, the rollup covering its days and no deletion since touching it), and from the
# messages only for the rest (today, as a rule). A contact's first message of a rolled day counts
# its gap from the message before it when that one is in the period; later messages of the day
# come counted per whole second (`window_rollup_gaps`); a message after the rolled days whose
# previous message is before them takes the contact's last rolled message instead. Those messages
# are found through their sessions (`session_recent`: a session's last activity is never before its
# messages), not by scanning every message. A NULL rank is a contact's first message in the period.
_ROLLED_STATEMENT = """
WITH live AS (
    SELECT s.contact_id, m.created_at,
           lag(m.created_at) OVER (PARTITION BY s.contact_id ORDER BY m.created_at) AS previous
    FROM {session} s JOIN {message} m ON m.session_id = s.id
    WHERE s.channel_id = %(channel)s AND s.contact_id IS NOT NULL AND s.last_activity_at >= %(rolled_to)s
      AND m.direction = %(inbound)s AND m.created_at >= %(rolled_to)s AND m.created_at < %(until)s
), gaps AS (
    SELECT date_part('epoch', l.created_at - CASE WHEN l.previous IS NULL THEN
               (SELECT r.last_at FROM {days} r
                WHERE r.channel_id = %(channel)s AND r.contact_id = l.contact_id
                  AND r.day >= %(rolled_from_day)s AND r.day < %(rolled_to_day)s
                ORDER BY r.day DESC LIMIT 1)
           ELSE l.previous END) AS gap
    FROM live l
    UNION ALL
    SELECT CASE WHEN r.previous_at >= %(since)s THEN date_part('epoch', r.first_at - r.previous_at) END
    FROM {days} r
    WHERE r.channel_id = %(channel)s AND r.day >= %(rolled_from_day)s AND r.day < %(rolled_to_day)s
)
SELECT width_bucket(-gap, %(thresholds)s::float8[]), count(*) FROM gaps GROUP BY 1
UNION ALL
SELECT width_bucket(-g.gap_seconds::float8, %(thresholds)s::float8[]), sum(g.count)::bigint
FROM {gap_counts} g
WHERE g.channel_id = %(channel)s AND g.day >= %(rolled_from_day)s AND g.day < %(rolled_to_day)s
GROUP BY 1
"""


def rolled_statement() -> str:
    return _ROLLED_STATEMENT.format(
        session=Session._meta.db_table,
        message=Message._meta.db_table,
        days=WindowRollupDay._meta.db_table,
        gap_counts=WindowRollupGaps._meta.db_table,
    )


def _midnight(day: date) -> datetime:
    return datetime.combine(day, time.min, tzinfo=UTC)


def rolled_days(channel: Channel, since: datetime, until: datetime) -> tuple[date, date] | None:
    """The days [first, end) of the period the rollup can answer, or None: the period must start
    at a UTC midnight, and no session deleted since the last roll may have held messages of it."""
    state = WindowRollupState.objects.filter(channel=channel).first()
    if state is None or state.rolled_until is None:
        return None
    if state.dirty_before is not None and state.dirty_before >= since:
        return None
    start = since.astimezone(UTC)
    if start.time() != time.min:
        return None
    first = start.date()
    end = min(until.astimezone(UTC).date(), state.rolled_until)
    return (first, end) if end > first else None


def rolled_params(
    channel: Channel, windows: Sequence[int], since: datetime, until: datetime
) -> dict[str, Any] | None:
    """The parameters of `rolled_statement` for this period, or None when the rollup cannot answer."""
    days = rolled_days(channel, since, until)
    if days is None:
        return None
    return {
        "channel": channel.pk,
        "inbound": str(Direction.INBOUND),
        "since": since,
        "until": until,
        "rolled_from_day": days[0],
        "rolled_to_day": days[1],
        "rolled_to": _midnight(days[1]),
        "thresholds": [-float(t) for t in reversed(thresholds(windows))],
    }


def window_report(channel: Channel, windows: Sequence[int], since: datetime, until: datetime) -> WindowReport:
    """The report for `channel`'s inbound messages in [since, until), for each window (seconds)."""
    seconds = [int(w) for w in windows]
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(f"SET LOCAL work_mem = '{WORK_MEM}'")
        rolled = rolled_params(channel, seconds, since, until)
        if rolled is None:
            cursor.execute(statement(), statement_params(channel, seconds, since, until))
        else:
            cursor.execute(rolled_statement(), rolled)
        rows = cursor.fetchall()
    # A gap with n thresholds at least as long is longer than threshold t exactly when n is at most
    # the number of thresholds longer than t.
    by_rank: dict[int, int] = {}
    contacts = 0
    for rank, count in rows:
        if rank is None:
            contacts += count
        else:
            by_rank[rank] = by_rank.get(rank, 0) + count
    lengths = thresholds(seconds)

    def longer_than(t: int) -> int:
        limit = sum(1 for other in lengths if other > t)
        return sum(count for rank, count in by_rank.items() if rank <= limit)

    all_gaps = sum(by_rank.values())
    over = [longer_than(upper) for upper in GAP_BUCKETS]
    counts = [all_gaps - over[0]]
    counts += [low - high for low, high in itertools.pairwise(over)]
    counts.append(over[-1])
    return WindowReport(
        windows=[WindowCount(w, contacts + longer_than(w)) for w in seconds],
        gaps=[GapBucket(upper, count) for upper, count in zip([*GAP_BUCKETS, None], counts, strict=True)],
        contacts=contacts,
        messages=contacts + all_gaps,
    )


# --- The daily rollup -----------------------------------------------------------------------------

# A day is rolled once it is this far behind: inbound messages are stored at their arrival time, and
# a transaction still open at midnight commits within it.
ROLL_MARGIN = timedelta(minutes=10)

# The channel's inbound messages of [start, end) with each one's previous (per contact), once: their
# gaps within a day counted per whole second rounded up, and per contact and day the first and last
# message and the one before the first (from this batch, or else the contact's latest rolled day).
_ROLL_STATEMENT = """
WITH batch AS MATERIALIZED (
    SELECT s.contact_id, m.created_at, (m.created_at AT TIME ZONE 'UTC')::date AS day,
           lag(m.created_at) OVER (PARTITION BY s.contact_id ORDER BY m.created_at) AS previous
    FROM {session} s JOIN {message} m ON m.session_id = s.id
    WHERE s.channel_id = %(channel)s AND s.contact_id IS NOT NULL AND s.last_activity_at >= %(start)s
      AND m.direction = %(inbound)s AND m.created_at >= %(start)s AND m.created_at < %(end)s
), counted AS (
    INSERT INTO {gap_counts} (channel_id, day, gap_seconds, count)
    SELECT %(channel)s, day, ceil(date_part('epoch', created_at - previous))::integer, count(*)
    FROM batch WHERE previous >= day::timestamp AT TIME ZONE 'UTC'
    GROUP BY 2, 3
    RETURNING 1
)
INSERT INTO {days} (channel_id, contact_id, day, first_at, last_at, previous_at)
SELECT %(channel)s, b.contact_id, b.day, min(b.created_at), max(b.created_at),
       CASE WHEN bool_or(b.previous IS NULL) THEN
           (SELECT r.last_at FROM {days} r
            WHERE r.channel_id = %(channel)s AND r.contact_id = b.contact_id AND r.day < %(start_day)s
            ORDER BY r.day DESC LIMIT 1)
       ELSE max(b.previous) FILTER (WHERE b.previous < b.day::timestamp AT TIME ZONE 'UTC') END
FROM batch b
GROUP BY b.contact_id, b.day
"""

# The start of time for a first roll (psycopg sends no -infinity).
BEGINNING = datetime(1, 1, 1, tzinfo=UTC)


def roll_up(channel: Channel, *, now: datetime | None = None) -> int:
    """Sum up `channel`'s finished UTC days not rolled yet (all of them the first time, and after a
    deletion made the rollup dirty); returns how many (contact, day) rows it wrote. One transaction; a second
    roll of the same channel waits for it, then finds nothing to do."""
    now = now or timezone.now()
    end = (now - ROLL_MARGIN).astimezone(UTC).date()
    with transaction.atomic():
        WindowRollupState.objects.get_or_create(channel=channel)
        state = WindowRollupState.objects.select_for_update().get(channel=channel)
        start = state.rolled_until
        if start is None or state.dirty_before is not None:
            WindowRollupDay.objects.filter(channel=channel).delete()
            WindowRollupGaps.objects.filter(channel=channel).delete()
            start = None
        if start is not None and start >= end:
            return 0
        with connection.cursor() as cursor:
            cursor.execute(f"SET LOCAL work_mem = '{WORK_MEM}'")
            cursor.execute(
                _ROLL_STATEMENT.format(
                    session=Session._meta.db_table,
                    message=Message._meta.db_table,
                    days=WindowRollupDay._meta.db_table,
                    gap_counts=WindowRollupGaps._meta.db_table,
                ),
                {
                    "channel": channel.pk,
                    "inbound": str(Direction.INBOUND),
                    "start": _midnight(start) if start else BEGINNING,
                    "start_day": start or BEGINNING.date(),
                    "end": _midnight(end),
                },
            )
            written = cursor.rowcount
        state.rolled_until = end
        state.dirty_before = None
        state.rolled_at = now
        state.save(update_fields=["rolled_until", "dirty_before", "rolled_at"])
    return written


def roll_up_channels(*, now: datetime | None = None) -> int:
    """Roll every channel with sessions (the beat task); returns the (contact, day) rows written."""
    channels = Channel.objects.filter(Exists(Session.objects.filter(channel=OuterRef("pk"))))
    return sum(roll_up(channel, now=now) for channel in channels)


class BadReportQuery(ValueError):
    """A report parameter that cannot be used; `field` names it (windows, since or until)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


MAX_PERIOD = timedelta(days=366)


@dataclass(frozen=True)
class ReportQuery:
    windows: list[int]
    since: datetime
    until: datetime

    @classmethod
    def parse(
        cls, windows: str | None, since: str | None, until: str | None, *, now: datetime
    ) -> ReportQuery:
        """The report's parameters as the API's query string, the command and the staff page give
        them: `windows` comma-separated seconds (default 60,300,900), `since`/`until` ISO 8601 with
        a time zone (default: from the UTC midnight 30 days before until, so the daily rollup answers
        the finished days; until: now). Raises `BadReportQuery`."""
        if windows is None or not windows.strip():
            chosen = list(DEFAULT_WINDOWS)
        else:
            try:
                chosen = [int(part) for part in windows.split(",") if part.strip()]
            except ValueError:
                raise BadReportQuery(
                    "windows", "Windows are whole seconds, comma-separated: 60,300,900."
                ) from None
            if not chosen or len(chosen) > MAX_WINDOWS:
                raise BadReportQuery("windows", f"Give 1 to {MAX_WINDOWS} windows.")
            if any(not 0 < w <= MAX_WINDOW_SECONDS for w in chosen):
                raise BadReportQuery("windows", f"Each window is 1 to {MAX_WINDOW_SECONDS} seconds.")
            chosen = list(dict.fromkeys(chosen))
        end = _moment("until", until) or now
        try:
            start = _moment("since", since) or _midnight((end - DEFAULT_PERIOD).astimezone(UTC).date())
        except OverflowError:
            raise BadReportQuery("until", "until is too early to have 30 days before it.") from None
        if start >= end:
            raise BadReportQuery("since", "since must be before until.")
        if end - start > MAX_PERIOD:
            raise BadReportQuery("since", f"The period is at most {MAX_PERIOD.days} days.")
        return cls(chosen, start, end)


def _moment(field: str, value: str | None) -> datetime | None:
    if value is None or not value.strip():
        return None
    try:
        moment = parse_datetime(value.strip().replace(" ", "+"))
    except ValueError:
        moment = None
    if moment is None or moment.tzinfo is None:
        raise BadReportQuery(
            field, f"{field} must be an ISO 8601 time with a zone, e.g. 2026-01-31T10:00:00Z."
        )
    try:
        return moment.astimezone(UTC)
    except (OverflowError, ValueError):
        raise BadReportQuery(field, f"{field} is out of range.") from None
