"""The sessions list's reads: filters from the URL, one keyset page, tab counts, the activity chart.

Everything here must stay cheap with a million sessions (see docs/ui-sessions-list.md):
- pages are keyset pages on (sort column, id) walking an index, never OFFSET and never a full COUNT;
- tab counts are small capped counts (at most 1,001 index entries each), cached for seconds;
- the chart counts past days once a day and only today again every minute.
"""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

from django.core.cache import cache
from django.db import connection
from django.db.models import Count, Q, QuerySet
from django.db.models.functions import TruncDate
from django.http import QueryDict
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from sessions_app.models import ChannelKind, Session, SessionStatus
from sessions_app.search.query import search_sessions
from sessions_app.search.statuses import SeveralStatuses, in_statuses

PAGE_SIZE = 50
COUNTS_TTL = 10  # seconds; tab counts may lag new sessions by this much
COUNT_CAP = 1_000
CHART_TTL = 60
CHART_DAYS = 30
# Overlap for "what changed since": a row whose timestamp was taken just before a poll but which
# committed just after it would otherwise never be sent.
POLL_OVERLAP = timedelta(seconds=5)
POLL_LIMIT = PAGE_SIZE


@dataclass(frozen=True)
class Tab:
    key: str
    label: str
    kinds: tuple[str, ...]


TABS: tuple[Tab, ...] = (
    Tab("", "All", ()),
    Tab("sms", "SMS", (ChannelKind.SMS,)),
    Tab("whatsapp", "WhatsApp", (ChannelKind.WHATSAPP,)),
    Tab("voice", "Voice", (ChannelKind.VOICE,)),
    Tab("web", "Web & API", (ChannelKind.WEB, ChannelKind.API)),
)
TAB_BY_KEY = {tab.key: tab for tab in TABS}
SORTS = {"activity": "last_activity_at", "created": "created_at"}
# The chart's series: one per tab except "All", in tab order, with colours that pass 3:1 contrast
# against the white background (WCAG non-text contrast).
SERIES = [(tab.key, tab.label, tab.kinds) for tab in TABS if tab.key]
SERIES_COLOURS = {"sms": "#1d4ed8", "whatsapp": "#047857", "voice": "#b45309", "web": "#7c3aed"}


def dates_from_query(params: QueryDict, problems: list[str]) -> tuple[date | None, date | None]:
    """The URL's From and To dates (`from`, `to`: 2025-01-31), None where absent; one that is not a date
    is None too and named in `problems` (the sessions list's and the reports page's filters)."""
    dates: list[date | None] = []
    for name, label in (("from", "From"), ("to", "To")):
        raw = params.get(name, "").strip()
        try:
            dates.append(date.fromisoformat(raw) if raw else None)
        except ValueError:
            problems.append(f"{label} date “{raw}” is not a date like 2025-01-31; ignored.")
            dates.append(None)
    return dates[0], dates[1]


@dataclass(frozen=True)
class ListFilters:
    channel: str = ""
    statuses: tuple[str, ...] = ()
    q: str = ""
    date_from: date | None = None
    date_to: date | None = None
    business: str = ""
    sort: str = "activity"
    cursor: str = ""
    problems: tuple[str, ...] = field(default=(), compare=False)

    @classmethod
    def from_query(cls, params: QueryDict) -> ListFilters:
        """Read the filters from the URL; a value that makes no sense is dropped and named in `problems`."""
        problems: list[str] = []
        channel = params.get("channel", "").strip()
        if channel not in TAB_BY_KEY:
            problems.append(f"Unknown channel “{channel}”; showing all channels.")
            channel = ""
        statuses = []
        for value in params.getlist("status"):
            if value in SessionStatus.values:
                if value not in statuses:
                    statuses.append(value)
            elif value:
                problems.append(f"Unknown status “{value}” ignored.")
        sort = params.get("sort", "activity") or "activity"
        if sort not in SORTS:
            problems.append(f"Unknown sort “{sort}”; sorted by last activity.")
            sort = "activity"
        date_from, date_to = dates_from_query(params, problems)
        cursor = params.get("cursor", "").strip()
        if cursor and decode_cursor(cursor) is None:
            problems.append("That page link is no longer valid; showing the newest sessions.")
            cursor = ""
        return cls(
            channel=channel,
            statuses=tuple(statuses),
            q=params.get("q", "").strip()[:200],
            date_from=date_from,
            date_to=date_to,
            business=params.get("business", "").strip()[:128],
            sort=sort,
            cursor=cursor,
            problems=tuple(problems),
        )

    @property
    def sort_field(self) -> str:
        return SORTS[self.sort]

    @property
    def is_filtered(self) -> bool:
        return bool(
            self.channel or self.statuses or self.q or self.date_from or self.date_to or self.business
        )

    def query_items(self) -> list[tuple[str, str]]:
        items: list[tuple[str, str]] = []
        if self.channel:
            items.append(("channel", self.channel))
        items.extend(("status", status) for status in self.statuses)
        if self.q:
            items.append(("q", self.q))
        if self.date_from:
            items.append(("from", self.date_from.isoformat()))
        if self.date_to:
            items.append(("to", self.date_to.isoformat()))
        if self.business:
            items.append(("business", self.business))
        if self.sort != "activity":
            items.append(("sort", self.sort))
        if self.cursor:
            items.append(("cursor", self.cursor))
        return items

    def export_query(self) -> str:
        """These filters (not the sort or page) as the export API's query (sessions_app/reports/)."""
        items: list[tuple[str, str]] = []
        if self.channel:
            items.extend(("channel", str(kind)) for kind in TAB_BY_KEY[self.channel].kinds)
        items.extend(("status", status) for status in self.statuses)
        if self.q:
            items.append(("q", self.q))
        if self.date_from:
            items.append(("created_after", _start_of(self.date_from).isoformat()))
        if self.date_to:
            # The API's bound is inclusive; the list's is the next midnight, excluded.
            last = _start_of(self.date_to + timedelta(days=1)) - timedelta(microseconds=1)
            items.append(("created_before", last.isoformat()))
        if self.business:
            items.append(("business_id", self.business))
        items.append(("format", "csv"))
        return urlencode(items)

    def url(self, **changes: Any) -> str:
        """This view's query string with `changes`; changing anything but the cursor restarts paging."""
        if "cursor" not in changes:
            changes["cursor"] = ""
        query = urlencode(replace(self, **changes).query_items())
        return f"?{query}" if query else "?"


def encode_cursor(session: Session, sort_field: str) -> str:
    value: datetime = getattr(session, sort_field)
    return f"{value.isoformat()}_{session.pk}"


def decode_cursor(cursor: str) -> tuple[datetime, uuid.UUID] | None:
    stamp, _, pk = cursor.rpartition("_")
    try:
        moment = parse_datetime(stamp)
        return (moment, uuid.UUID(pk)) if moment is not None and moment.tzinfo else None
    except ValueError:
        return None


def _filtered(filters: ListFilters, *, channel: bool = True, search: bool = True) -> QuerySet[Session]:
    qs: QuerySet[Session] = (
        in_statuses(Session.objects.all(), filters.statuses) if filters.statuses else Session.objects.all()
    )
    if channel and filters.channel:
        kinds = TAB_BY_KEY[filters.channel].kinds
        qs = qs.filter(channel_kind=kinds[0]) if len(kinds) == 1 else qs.filter(channel_kind__in=kinds)
    if filters.business:
        qs = qs.filter(business_id=filters.business)
    if filters.date_from:
        qs = qs.filter(created_at__gte=_start_of(filters.date_from))
    if filters.date_to:
        qs = qs.filter(created_at__lt=_start_of(filters.date_to + timedelta(days=1)))
    if search and filters.q:
        qs = search_sessions(qs, filters.q)
    return qs


def _start_of(day: date) -> datetime:
    return timezone.make_aware(datetime.combine(day, datetime.min.time()))


def _ordered(qs: QuerySet[Session], sort_field: str) -> QuerySet[Session]:
    return qs.select_related("contact").order_by(f"-{sort_field}", "-id")


@dataclass
class Page:
    sessions: list[Session]
    next_cursor: str


def sessions_page(filters: ListFilters, page_size: int = PAGE_SIZE) -> Page:
    """One page of sessions after `filters.cursor`, newest first, and the cursor of the next page."""
    sort_field = filters.sort_field
    qs = _filtered(filters)
    position = decode_cursor(filters.cursor) if filters.cursor else None
    if position is not None:
        moment, pk = position
        # The first condition alone is a range the index can seek to; the OR refines ties.
        qs = qs.filter(**{f"{sort_field}__lte": moment}).filter(
            Q(**{f"{sort_field}__lt": moment}) | Q(**{sort_field: moment, "id__lt": pk})
        )
    page: QuerySet[Session] | SeveralStatuses = _ordered(qs, sort_field)
    if len(set(filters.statuses)) > 1:
        # One index range per status, merged (search/statuses.py).
        page = SeveralStatuses(qs.select_related("contact"), filters.statuses).order_by(
            f"-{sort_field}", "-id"
        )
    rows = list(page[: page_size + 1])
    next_cursor = encode_cursor(rows[page_size - 1], sort_field) if len(rows) > page_size else ""
    return Page(rows[:page_size], next_cursor)


def changed_sessions(filters: ListFilters, since: datetime) -> list[Session]:
    """Sessions matching `filters` (cursor aside) with activity after `since`, newest first."""
    qs = _filtered(filters).filter(last_activity_at__gt=since - POLL_OVERLAP)
    return list(_ordered(qs, "last_activity_at")[:POLL_LIMIT])


def _cache_key(prefix: str, *parts: object) -> str:
    digest = hashlib.sha256(repr(parts).encode()).hexdigest()[:24]
    return f"sessions_ui:{prefix}:{digest}"


def tab_counts(filters: ListFilters) -> dict[str, int]:
    """Sessions per tab under the status, business and date filters (not the search; see the docs page).

    Counts stop at COUNT_CAP + 1 (shown as "1,000+"), so they cost a bounded number of index entries
    however large the table grows; exact numbers past that help nobody pick a tab. First one grouped
    pass over at most COUNT_CAP + 1 matching rows: when fewer match, it is exact for every tab. Only
    when more match does each tab get its own capped count (then matches are dense and each stops
    early). Cached for COUNTS_TTL seconds.
    """
    key = _cache_key("counts", filters.statuses, filters.business, filters.date_from, filters.date_to)
    cached: dict[str, int] | None = cache.get(key)
    if cached is not None:
        return cached
    base = _filtered(filters, channel=False, search=False).order_by()
    sample_sql, params = base.values("channel_kind")[: COUNT_CAP + 1].query.sql_with_params()
    with connection.cursor() as cursor:
        # The ORM cannot group over a LIMITed subquery; the subquery itself is the ORM's own SQL.
        cursor.execute(
            f"SELECT sample.channel_kind, COUNT(*) FROM ({sample_sql}) sample GROUP BY sample.channel_kind",  # noqa: S608
            params,
        )
        per_kind: dict[str, int] = dict(cursor.fetchall())
    counts = {tab.key: sum(per_kind.get(kind, 0) for kind in tab.kinds) for tab in TABS if tab.key}
    counts[""] = sum(per_kind.values())
    if counts[""] > COUNT_CAP:
        for tab in TABS[1:]:
            qs = base.filter(channel_kind__in=tab.kinds)
            counts[tab.key] = qs.values("pk")[: COUNT_CAP + 1].count()
    cache.set(key, counts, COUNTS_TTL)
    return counts


def count_label(n: int) -> str:
    return f"{COUNT_CAP:,}+" if n > COUNT_CAP else f"{n:,}"


@dataclass
class ChartDay:
    day: date
    counts: dict[str, int]

    @property
    def total(self) -> int:
        return sum(self.counts.values())


def _per_day(start: date, end: date) -> dict[date, dict[str, int]]:
    """Sessions started per day per chart series for the days in [start, end)."""
    rows = (
        Session.objects.filter(created_at__gte=_start_of(start), created_at__lt=_start_of(end))
        .annotate(day=TruncDate("created_at", tzinfo=timezone.get_current_timezone()))
        .order_by()
        .values_list("day", "channel_kind")
        .annotate(n=Count("pk"))
    )
    series_of = {kind: key for key, _label, kinds in SERIES for kind in kinds}
    days = (end - start).days
    by_day = {start + timedelta(days=i): {key: 0 for key, _label, _kinds in SERIES} for i in range(days)}
    for day, kind, n in rows:
        if day in by_day and kind in series_of:
            by_day[day][series_of[kind]] += n
    return by_day


def daily_counts(days: int = CHART_DAYS) -> list[ChartDay]:
    """Sessions started per day per chart series over the last `days` days (today included), oldest first.

    Past days no longer change (a session's creation time is fixed), so they are counted once a day;
    only today is counted again, for CHART_TTL seconds at a time, over an index range of one day.
    """
    today = timezone.localdate()
    first = today - timedelta(days=days - 1)
    past_key = _cache_key("chart-past", first, today)
    past: dict[date, dict[str, int]] | None = cache.get(past_key)
    if past is None:
        past = _per_day(first, today)
        cache.set(past_key, past, 24 * 3600)
    today_key = _cache_key("chart-today", today)
    current: dict[date, dict[str, int]] | None = cache.get(today_key)
    if current is None:
        current = _per_day(today, today + timedelta(days=1))
        cache.set(today_key, current, CHART_TTL)
    return [ChartDay(day, counts) for day, counts in {**past, **current}.items()]


MERGE_CHOICES = 20


def merge_targets(session: Session) -> list[Session]:
    """The sessions `session` may be merged into, newest first: the same contact's on the same
    channel, not merged themselves (`session_contact_recent` serves it: a contact's few sessions)."""
    if session.contact_id is None:
        return []
    return list(
        Session.objects.filter(contact_id=session.contact_id, channel_id=session.channel_id)
        .exclude(pk=session.pk)
        .exclude(status=SessionStatus.MERGED)
        .order_by("-last_activity_at", "-id")[:MERGE_CHOICES]
    )
