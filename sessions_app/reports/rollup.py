"""The daily rollup: past days' figures stored once per day, channel kind and business (docs/reports.md).

Days are days in `TIME_ZONE`. A beat task (`refresh_rollups`) runs every `REPORTS_ROLLUP_INTERVAL`:

1. it marks stale every day not yet rolled up (from the first session's day to yesterday), every day
   rolled up in another time zone, and every day that a session changed since its last run touches:
   the session's creation day and the days of its messages and status changes. A change is seen by
   the session's `updated_at`, which every write to a session, its messages or its status bumps
   (ingest, replies, transitions, the sweep), re-read with an overlap so a transaction that committed
   late is not missed;
2. it claims stale days one at a time with `select_for_update(skip_locked=True)` (two workers never
   compute the same day) and recomputes each whole from `metrics.live_figures`, in one transaction,
   until the time budget is spent; the next run goes on.

Marking takes the day's row lock, so a day marked while it is being computed is computed again.
A day's rows are one per channel kind and business plus its totals (per kind, per business, overall:
NULL is "every"), which `rolled_up` reads, a few rows a day whatever the number of businesses.

Today has a provisional rollup of its own (`refresh_today`, its own beat task every
`REPORTS_TODAY_INTERVAL`): today's rows recomputed whole from `live_figures`, under today's
`RollupDay` row claimed with `select_for_update(skip_locked=True)`, its `computed_at` taken before
the first query, so the figures hold every row committed before it. The summary reads them while
they are at most `REPORTS_TODAY_MAX_AGE` old (the same promise as today's live figures kept in the
cache), and computes today live otherwise. Once the day is over, the daily task claims it like a
stale day and recomputes it as final.
Rows deleted for good (purge, erasure) leave the days they counted in as they were: the rollup keeps
the history, and holds no personal data.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.db.models.functions import TruncDate
from django.utils import timezone

from sessions_app.models import DailyRollup, Message, RollupDay, RollupWatermark, Session, StatusChange
from sessions_app.reports.metrics import COUNTS, Distribution, Figures, Selection, days_between, live_figures

log = logging.getLogger(__name__)

WATERMARK = "daily"
# Changes are looked for from this long before the last run's start: a transaction that stamped
# `updated_at` before that start but committed after it is still seen.
OVERLAP = timedelta(minutes=10)
TIME_BUDGET = 50.0  # seconds one run computes days for


def report_zone() -> ZoneInfo:
    return ZoneInfo(settings.TIME_ZONE)


def today_in(tz: ZoneInfo) -> date:
    return timezone.now().astimezone(tz).date()


@dataclass(frozen=True)
class RefreshResult:
    marked: int
    computed: int
    pending: int


def refresh_rollups(budget: float = TIME_BUDGET) -> RefreshResult:
    marked = mark_stale_days()
    computed = 0
    deadline = time.monotonic() + budget
    while time.monotonic() < deadline and compute_next_day():
        computed += 1
    pending = RollupDay.objects.filter(UNFINISHED, day__lt=today_in(report_zone())).count()
    if marked or computed:
        log.info("Report rollup: %s day(s) marked stale, %s computed, %s left", marked, computed, pending)
    return RefreshResult(marked, computed, pending)


def mark_stale_days() -> int:
    """Mark stale the days that are missing, in another time zone, or touched by changed sessions."""
    tz = report_zone()
    today = today_in(tz)
    now = timezone.now()
    with transaction.atomic():
        mark, created = RollupWatermark.objects.select_for_update().get_or_create(
            key=WATERMARK, defaults={"changes_until": now}
        )
        touched: set[date] = set() if created else changed_days(mark.changes_until - OVERLAP, tz)
        first = Session.objects.order_by("created_at").values_list("created_at", flat=True).first()
        marked = 0
        if first is not None and first.astimezone(tz).date() < today:
            known = set(RollupDay.objects.values_list("day", flat=True))
            missing = [
                RollupDay(day=day, time_zone=tz.key, stale=True)
                for day in days_between(first.astimezone(tz).date(), today - timedelta(days=1))
                if day not in known
            ]
            RollupDay.objects.bulk_create(missing, ignore_conflicts=True)
            marked += len(missing)
        marked += RollupDay.objects.filter(stale=False).exclude(time_zone=tz.key).update(stale=True)
        touched = {day for day in touched if day < today}
        if touched:
            # Not only the fresh ones: a day being computed right now is stale until it commits, and
            # this update waits for that and marks it again (it may have read before the change).
            marked += RollupDay.objects.filter(day__in=touched).update(stale=True)
            RollupDay.objects.bulk_create(
                [RollupDay(day=day, time_zone=tz.key, stale=True) for day in touched], ignore_conflicts=True
            )
        mark.changes_until = now
        mark.save(update_fields=["changes_until"])
    return marked


def changed_days(since: datetime, tz: ZoneInfo) -> set[date]:
    """The days (in `tz`) whose figures sessions changed at or after `since` count in."""
    changed = Session.objects.filter(updated_at__gte=since)
    days = (
        changed.annotate(day=TruncDate("created_at", tzinfo=tz))
        .order_by()
        .values_list("day", flat=True)
        .union(
            Message.objects.filter(session__in=changed.values("pk"))
            .annotate(day=TruncDate("created_at", tzinfo=tz))
            .order_by()
            .values_list("day", flat=True),
            StatusChange.objects.filter(session__in=changed.values("pk"))
            .annotate(day=TruncDate("created_at", tzinfo=tz))
            .order_by()
            .values_list("day", flat=True),
        )
    )
    return set(days)


# A past day the daily task has yet to compute: stale, or today's provisional rows of a day now over.
UNFINISHED = Q(stale=True) | Q(provisional=True)


def compute_next_day() -> bool:
    """Claim the newest unfinished past day and recompute it; False when none is left to claim."""
    tz = report_zone()
    with transaction.atomic():
        day = (
            RollupDay.objects.select_for_update(skip_locked=True)
            .filter(UNFINISHED, day__lt=today_in(tz))
            .order_by("-day")
            .first()
        )
        if day is None:
            return False
        store_day(day, tz, provisional=False)
    return True


def refresh_today(min_gap: timedelta | None = None) -> bool:
    """Recompute today's provisional rollup; False if another worker holds it, or computed it less
    than `min_gap` (default: half of REPORTS_TODAY_INTERVAL) ago, so two runs at once compute it once."""
    if min_gap is None:
        min_gap = timedelta(seconds=settings.REPORTS_TODAY_INTERVAL / 2)
    tz = report_zone()
    today = today_in(tz)
    # The row first, committed on its own, so a second run finds it to skip instead of waiting on
    # an uncommitted insert.
    RollupDay.objects.bulk_create(
        [RollupDay(day=today, time_zone=tz.key, stale=True, provisional=True)], ignore_conflicts=True
    )
    with transaction.atomic():
        day = RollupDay.objects.select_for_update(skip_locked=True).filter(day=today).first()
        now = timezone.now()
        if day is None or today_in(tz) != today:  # held by another run, or midnight passed meanwhile
            return False
        recent = day.computed_at is not None and day.computed_at > now - min_gap
        if day.provisional and not day.stale and day.time_zone == tz.key and recent:
            return False
        store_day(day, tz, provisional=True, as_of=now)
    return True


def store_day(day: RollupDay, tz: ZoneInfo, *, provisional: bool, as_of: datetime | None = None) -> None:
    """Replace the rollup rows of `day` (claimed, locked) with its figures computed now; `as_of`, a
    time taken before the computation, is stored as `computed_at` (default: once it is done)."""
    cells: dict[tuple[str | None, str | None], Figures] = {}
    for (_day, kind, business), f in live_figures(day.day, day.day, tz, Selection()).items():
        cells[(kind, business)] = f
        # The day's totals (None: every kind, every business), which the summary reads instead of
        # adding up every business's row (model docstring).
        for total in ((kind, None), (None, business), (None, None)):
            cells.setdefault(total, Figures()).add(f)
    DailyRollup.objects.filter(day=day.day).delete()
    DailyRollup.objects.bulk_create(
        [
            DailyRollup(
                day=day.day,
                channel_kind=kind,
                business_id=business,
                **{name: getattr(f, name) for name in COUNTS},
                first_response_count=f.first_response.count,
                first_response_total=f.first_response.total,
                first_response_histogram=f.first_response.for_storage(),
                resolution_count=f.resolution.count,
                resolution_total=f.resolution.total,
                resolution_histogram=f.resolution.for_storage(),
            )
            for (kind, business), f in cells.items()
        ]
    )
    day.stale = False
    day.provisional = provisional
    day.time_zone = tz.key
    day.computed_at = as_of or timezone.now()
    day.save(update_fields=["stale", "provisional", "time_zone", "computed_at"])


def rolled_up(first: date, last: date, tz: ZoneInfo, selection: Selection) -> dict[date, Figures]:
    """The figures of the days from `first` to `last` that the rollup holds up to date for `selection`
    (none if the selection or the time zone is not one the rollup is kept for): past days rolled up
    as final, and today if its provisional rollup is at most REPORTS_TODAY_MAX_AGE old."""
    if not selection.fits_rollup or tz.key != settings.TIME_ZONE:
        return {}
    today = today_in(tz)
    last = min(last, today)
    if selection.empty or last < first:
        return {}
    oldest = timezone.now() - timedelta(seconds=settings.REPORTS_TODAY_MAX_AGE)
    fresh = RollupDay.objects.filter(
        Q(day__lt=today, provisional=False) | Q(day=today, provisional=True, computed_at__gte=oldest),
        day__gte=first,
        day__lte=last,
        stale=False,
        time_zone=tz.key,
    )
    result = {day: Figures() for day in fresh.values_list("day", flat=True)}
    # The totals rows that answer the selection: a few per day, however many businesses there are.
    rows = DailyRollup.objects.filter(
        day__in=result.keys(),
        **({"channel_kind__in": selection.kinds} if selection.kinds else {"channel_kind__isnull": True}),
        **(
            {"business_id": selection.business_id}
            if selection.business_id is not None
            else {"business_id__isnull": True}
        ),
    )
    for row in rows.values(
        "day",
        *COUNTS,
        "first_response_count",
        "first_response_total",
        "first_response_histogram",
        "resolution_count",
        "resolution_total",
        "resolution_histogram",
    ):
        result[row["day"]].add(
            Figures(
                **{name: row[name] for name in COUNTS},
                first_response=Distribution.stored(
                    row["first_response_histogram"], row["first_response_count"], row["first_response_total"]
                ),
                resolution=Distribution.stored(
                    row["resolution_histogram"], row["resolution_count"], row["resolution_total"]
                ),
            )
        )
    return result
