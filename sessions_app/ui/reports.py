"""The staff reports page, /sessions/reports/: the summary's figures as server-drawn SVG charts, each
with a table of the same numbers, for a range of days and a channel (docs/reports.md)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

from django.conf import settings
from django.http import HttpRequest, HttpResponse, QueryDict
from django.shortcuts import render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_GET

from sessions_app.models import ChannelKind
from sessions_app.reports.metrics import Distribution, Figures, Selection
from sessions_app.reports.summary import Summary, summarise
from sessions_app.ui.queries import dates_from_query
from sessions_app.ui.svg import BOTTOM, LEFT, TOP, WIDTH, Bar
from sessions_app.ui.views import staff_required

DEFAULT_DAYS = 30
MAX_DAYS = 366
HEIGHT = 170
# First-response distribution bins: (upper bound in seconds, label); the last is open-ended.
RESPONSE_BINS = [(60, "< 1 min"), (300, "1-5 min"), (900, "5-15 min"), (3600, "15-60 min"), (14400, "1-4 h")]
COLOURS = ["#1d4ed8", "#047857", "#b45309", "#7c3aed"]


@dataclass(frozen=True)
class BarChart:
    """Grouped bars: one group per label, one bar per series, on a shared scale."""

    title: str
    labels: list[str]
    series: list[tuple[str, str]]  # (name, colour)
    rows: list[list[str]]  # the table: one row per label, a formatted value per series
    bars: list[Bar]
    max_label: str
    width: int = WIDTH
    height: int = HEIGHT
    left: int = LEFT
    top: int = TOP
    baseline_y: int = HEIGHT - BOTTOM

    @property
    def is_empty(self) -> bool:
        return not self.bars

    @property
    def first_label(self) -> str:
        return self.labels[0] if self.labels else ""

    @property
    def last_label(self) -> str:
        return self.labels[-1] if self.labels else ""


def bar_chart(
    title: str, labels: list[str], series: list[tuple[str, list[float]]], unit: str = ""
) -> BarChart:
    peak = max((value for _name, values in series for value in values), default=0) or 0
    slot = (WIDTH - LEFT) / max(len(labels), 1)
    width = max(slot * 0.8 / max(len(series), 1), 1.0)
    plot = HEIGHT - TOP - BOTTOM
    bars = []
    for index, label in enumerate(labels):
        for position, (name, values) in enumerate(series):
            value = values[index]
            if not value:
                continue
            height = plot * value / peak
            bars.append(
                Bar(
                    x=round(LEFT + index * slot + slot * 0.1 + position * width, 2),
                    y=round(HEIGHT - BOTTOM - height, 2),
                    width=round(width, 2),
                    height=round(height, 2),
                    title=f"{label}: {_number(value)}{unit} {name}",
                    colour=COLOURS[position % len(COLOURS)],
                )
            )
    return BarChart(
        title=title,
        labels=labels,
        series=[(name, COLOURS[i % len(COLOURS)]) for i, (name, _values) in enumerate(series)],
        rows=[
            [label, *(_number(values[i]) + unit for _name, values in series)]
            for i, label in enumerate(labels)
        ],
        bars=bars,
        max_label=_number(peak) + unit,
    )


def _number(value: float) -> str:
    return f"{value:,.0f}" if float(value).is_integer() else f"{value:,.1f}"


def response_bins(distribution: Distribution) -> list[int]:
    counts = [0] * (len(RESPONSE_BINS) + 1)
    for seconds, n in distribution.histogram.items():
        index = next(
            (i for i, (upper, _label) in enumerate(RESPONSE_BINS) if seconds < upper), len(RESPONSE_BINS)
        )
        counts[index] += n
    return counts


def _share(part: int, whole: int) -> float:
    return round(100 * part / whole, 1) if whole else 0.0


@dataclass(frozen=True)
class ReportFilters:
    first: date
    last: date
    channel: str
    problems: tuple[str, ...]

    @classmethod
    def from_query(cls, params: QueryDict, today: date) -> ReportFilters:
        problems: list[str] = []
        date_from, date_to = dates_from_query(params, problems)
        last = date_to or today
        first = date_from or last - timedelta(days=DEFAULT_DAYS - 1)
        if first > last:
            problems.append("The range started after it ended; showing the 30 days before its end.")
            first = last - timedelta(days=DEFAULT_DAYS - 1)
        if (last - first).days + 1 > MAX_DAYS:
            problems.append(f"A report covers at most {MAX_DAYS} days; showing the last {MAX_DAYS}.")
            first = last - timedelta(days=MAX_DAYS - 1)
        channel = params.get("channel", "").strip()
        if channel and channel not in ChannelKind.values:
            problems.append(f"Unknown channel “{channel}”; showing all channels.")
            channel = ""
        return cls(first, last, channel, tuple(problems))

    def export_url(self, tz: ZoneInfo) -> str:
        """The sessions created in the range, as CSV, from the export API (staff's login works there)."""
        query: list[tuple[str, str]] = [
            ("created_after", datetime.combine(self.first, time.min, tzinfo=tz).isoformat()),
            (
                "created_before",
                datetime.combine(self.last + timedelta(days=1), time.min, tzinfo=tz).isoformat(),
            ),
            ("format", "csv"),
        ]
        if self.channel:
            query.append(("channel", self.channel))
        return reverse("session-export") + "?" + urlencode(query)


def charts(summary: Summary) -> list[BarChart]:
    days = [(day.isoformat(), figures) for day, figures in summary.periods]
    labels = [label for label, _figures in days]
    total: Figures = summary.total
    return [
        bar_chart(
            "Sessions and messages per day",
            labels,
            [
                ("sessions opened", [f.sessions_opened for _d, f in days]),
                ("messages in", [f.messages_inbound for _d, f in days]),
                ("messages out", [f.messages_outbound for _d, f in days]),
            ],
        ),
        bar_chart(
            "First response: how many sessions were answered within",
            [label for _upper, label in RESPONSE_BINS] + ["4 h or more"],
            [("sessions", [float(n) for n in response_bins(total.first_response)])],
        ),
        bar_chart(
            "Abandoned and reopened, as a share of the sessions opened that day",
            labels,
            [
                ("abandoned", [_share(f.abandoned, f.sessions_opened) for _d, f in days]),
                ("reopened", [_share(f.reopened, f.sessions_opened) for _d, f in days]),
            ],
            unit="%",
        ),
    ]


def _minutes(seconds: float | int | None) -> str:
    if seconds is None:
        return "—"
    return f"{seconds:,.0f} s" if seconds < 120 else f"{seconds / 60:,.1f} min"


@require_GET
@staff_required
def reports_page(request: HttpRequest) -> HttpResponse:
    tz = ZoneInfo(settings.TIME_ZONE)
    filters = ReportFilters.from_query(request.GET, timezone.now().astimezone(tz).date())
    selection = Selection(kinds=(filters.channel,) if filters.channel else ())
    summary = summarise(filters.first, filters.last, tz, selection)
    total = summary.total
    first_response, resolution = total.first_response.as_dict(), total.resolution.as_dict()
    context = {
        "filters": filters,
        "channels": [("", "All channels"), *ChannelKind.choices],
        "summary": summary,
        "total": total,
        "headline": [
            ("Sessions opened", f"{total.sessions_opened:,}"),
            ("Messages in / out", f"{total.messages_inbound:,} / {total.messages_outbound:,}"),
            (
                "First response p50 / p90",
                f"{_minutes(first_response['p50'])} / {_minutes(first_response['p90'])}",
            ),
            ("Resolution p50 / p90", f"{_minutes(resolution['p50'])} / {_minutes(resolution['p90'])}"),
            ("Abandoned", f"{total.abandoned:,}"),
            ("Reopened", f"{total.reopened:,}"),
            ("Merged", f"{total.merged:,}"),
            ("Handled by the agent alone", f"{total.agent_only_sessions:,}"),
            ("Staff replies", f"{total.staff_replies:,}"),
        ],
        "charts": charts(summary),
        "export_url": filters.export_url(tz),
        "time_zone": tz.key,
    }
    return render(request, "sessions_ui/reports.html", context)
