"""The what-if window report: how many sessions other reuse windows would have made of a channel's history.

For each window, per contact: one session, plus one for every gap between consecutive inbound
messages longer than the window (the reuse rule's `>`: a gap of exactly the window joins). Beside
it, the gaps themselves, counted in fixed buckets. One statement in the database: `lag()` over the
channel's inbound messages per contact gives every gap, and one pass of filtered counts over them
gives every window's count and every bucket at once (docs/session-boundaries.md; measured with
`.venv/bin/python bench/window_report.py`).

It replays inbound messages only, as the issue defines it; the live rule measures a gap from the
session's last message of either direction (an agent's reply keeps a session going), so the live
count under the same window can be lower. Merged sessions hold no messages, split ones hold theirs:
the replay reads messages, whatever sessions they are in now.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from django.db import connection, transaction
from django.utils.dateparse import parse_datetime

from sessions_app.models import Channel, Direction, Message, Session

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


def window_report(channel: Channel, windows: Sequence[int], since: datetime, until: datetime) -> WindowReport:
    """The report for `channel`'s inbound messages in [since, until), for each window (seconds)."""
    seconds = [int(w) for w in windows]
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(f"SET LOCAL work_mem = '{WORK_MEM}'")
        cursor.execute(statement(), statement_params(channel, seconds, since, until))
        rows = cursor.fetchall()
    # A gap with n thresholds at least as long is longer than threshold t exactly when n is at most
    # the number of thresholds longer than t.
    by_rank = {rank: count for rank, count in rows if rank is not None}
    contacts = sum(count for rank, count in rows if rank is None)
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
        a time zone (default: the 30 days up to now). Raises `BadReportQuery`."""
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
            start = _moment("since", since) or end - DEFAULT_PERIOD
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
