"""The summary over a range of days: from the rollup where it holds them (past days, and today while
its provisional rollup is recent), the rest live."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from django.conf import settings
from django.core.cache import cache

from sessions_app.reports import rollup
from sessions_app.reports.metrics import Figures, Key, Selection, days_between, live_figures

GROUPINGS = ("day", "week")


@dataclass(frozen=True)
class Summary:
    first: date
    last: date
    tz: ZoneInfo
    group_by: str
    total: Figures
    periods: list[tuple[date, Figures]]  # (first day of the period, its figures), oldest first
    rollup_days: int
    live_days: int

    def as_dict(self) -> dict[str, Any]:
        return {
            "since": self.first.isoformat(),
            "until": self.last.isoformat(),
            "time_zone": self.tz.key,
            "group_by": self.group_by,
            **self.total.as_dict(),
            f"by_{self.group_by}": [
                {self.group_by: start.isoformat(), **figures.as_dict()} for start, figures in self.periods
            ],
            "computed": {"rollup_days": self.rollup_days, "live_days": self.live_days},
        }


def period_start(day: date, group_by: str) -> date:
    """The day a period starts: the day itself, or the Monday of its ISO week."""
    return day - timedelta(days=day.weekday()) if group_by == "week" else day


def summarise(first: date, last: date, tz: ZoneInfo, selection: Selection, group_by: str = "day") -> Summary:
    """Figures for the days `first` to `last` (inclusive, in `tz`), in total and per period; a week
    cut by the range counts only its days inside it."""
    days = days_between(first, last)
    per_day: dict[date, Figures] = {day: Figures() for day in days}
    stored = rollup.rolled_up(first, last, tz, selection)
    for day, figures in stored.items():
        per_day[day].add(figures)
    today = rollup.today_in(tz)
    live = [day for day in days if day not in stored and day <= today]
    for run_first, run_last in _runs([day for day in live if day != today]):
        for (day, _kind, _business), figures in live_figures(run_first, run_last, tz, selection).items():
            per_day[day].add(figures)
    if today in live:
        for (day, _kind, _business), figures in _today(today, tz, selection).items():
            per_day[day].add(figures)
    total = Figures()
    periods: dict[date, Figures] = {}
    for day in days:
        total.add(per_day[day])
        periods.setdefault(period_start(day, group_by), Figures()).add(per_day[day])
    return Summary(
        first,
        last,
        tz,
        group_by,
        total,
        sorted(periods.items()),
        rollup_days=len(stored),
        live_days=len(live),
    )


def _runs(days: list[date]) -> list[tuple[date, date]]:
    """Consecutive days as (first, last) runs, so each run is one set of live queries."""
    runs: list[tuple[date, date]] = []
    for day in days:
        if runs and runs[-1][1] + timedelta(days=1) == day:
            runs[-1] = (runs[-1][0], day)
        else:
            runs.append((day, day))
    return runs


def _today(today: date, tz: ZoneInfo, selection: Selection) -> dict[Key, Figures]:
    """Today computed live, when its provisional rollup is missing or too old, or cannot serve the
    selection (an owner, another time zone): kept in the cache per selection and time zone for
    REPORTS_TODAY_MAX_AGE seconds (at 32,000 sessions a day it takes about two seconds)."""
    digest = hashlib.sha256(repr((today, tz.key, selection)).encode()).hexdigest()[:24]
    key = f"reports:today:{digest}"
    figures: dict[Key, Figures] | None = cache.get(key)
    if figures is None:
        figures = live_figures(today, today, tz, selection)
        cache.set(key, figures, settings.REPORTS_TODAY_MAX_AGE)
    return figures
