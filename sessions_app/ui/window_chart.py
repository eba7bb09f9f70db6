"""Geometry of the window report's chart: the gap histogram as bars, the sessions each window would
make as a line over the same axis, and the channel's current window marked. Inline SVG drawn on the
server, as the sessions-per-day chart is (`chart.py`): no chart library, no CDN, no JavaScript.

The x axis is the histogram's buckets side by side; a bucket's right edge is its upper bound, where
the line's point for that window sits; a window between two bounds is placed in its bucket in
proportion to its logarithm.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from sessions_app.ingest.window_report import GAP_BUCKETS, WindowReport
from sessions_app.ui.svg import Bar

WIDTH = 720
HEIGHT = 240
TOP = 16
BOTTOM = 34  # room for the bucket labels
LEFT = 56
RIGHT = 56  # room for the sessions axis


def duration_label(seconds: int | None) -> str:
    """300 → "5 min", 7200 → "2 h", None → "longer"."""
    if seconds is None:
        return "longer"
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds // size} {unit}"
    return f"{seconds} s"


@dataclass(frozen=True)
class Point:
    x: float
    y: float
    seconds: int
    sessions: int


@dataclass(frozen=True)
class WindowChart:
    width: int
    height: int
    left: int
    top: int
    baseline_y: float
    right_x: float
    bars: list[Bar]
    points: list[Point]
    max_gaps: int
    max_sessions: int
    current_x: float | None
    current_label: str

    @property
    def polyline(self) -> str:
        return " ".join(f"{p.x},{p.y}" for p in self.points)

    @property
    def is_empty(self) -> bool:
        return self.max_gaps == 0


def _window_x(seconds: int, left: float, slot: float) -> float:
    """Where a window of `seconds` falls on the bucket axis."""
    lower = 0.0
    for index, upper in enumerate(GAP_BUCKETS):
        if seconds <= upper:
            low = max(lower, 1.0)
            share = (math.log(max(seconds, 1)) - math.log(low)) / (math.log(upper) - math.log(low))
            return left + slot * (index + min(max(share, 0.0), 1.0))
        lower = upper
    return left + slot * len(GAP_BUCKETS) + slot / 2


def build_window_chart(report: WindowReport, current_window: int) -> WindowChart:
    buckets = report.gaps
    slot = (WIDTH - LEFT - RIGHT) / len(buckets)
    plot = HEIGHT - TOP - BOTTOM
    baseline = float(HEIGHT - BOTTOM)
    max_gaps = max((b.count for b in buckets), default=0)
    bars = []
    previous: int | None = 0
    for index, bucket in enumerate(buckets):
        height = plot * bucket.count / max_gaps if max_gaps else 0.0
        low = duration_label(previous) if previous else "0"
        span = f"{low} to {duration_label(bucket.upper_seconds)}" if bucket.upper_seconds else f"over {low}"
        bars.append(
            Bar(
                x=round(LEFT + index * slot + slot * 0.1, 2),
                y=round(baseline - height, 2),
                width=round(slot * 0.8, 2),
                height=round(height, 2),
                title=f"gaps of {span}: {bucket.count:,}",
                label=duration_label(bucket.upper_seconds),
            )
        )
        previous = bucket.upper_seconds
    sessions = [(upper, report.sessions_at(upper)) for upper in GAP_BUCKETS]
    max_sessions = max((n for _, n in sessions), default=0)
    points = [
        Point(
            x=round(LEFT + (index + 1) * slot, 2),
            y=round(baseline - (plot * n / max_sessions if max_sessions else 0.0), 2),
            seconds=upper,
            sessions=n,
        )
        for index, (upper, n) in enumerate(sessions)
    ]
    return WindowChart(
        width=WIDTH,
        height=HEIGHT,
        left=LEFT,
        top=TOP,
        baseline_y=baseline,
        right_x=WIDTH - RIGHT,
        bars=bars,
        points=points,
        max_gaps=max_gaps,
        max_sessions=max_sessions,
        current_x=round(_window_x(current_window, LEFT, slot), 2) if current_window else None,
        current_label=duration_label(current_window),
    )
