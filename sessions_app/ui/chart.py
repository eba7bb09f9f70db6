"""Geometry of the "sessions per day" chart: stacked bars the template draws as inline SVG.

Drawn on the server so the page needs no chart library and shows the chart without JavaScript.
"""

from __future__ import annotations

from dataclasses import dataclass

from sessions_app.ui.queries import SERIES, SERIES_COLOURS, ChartDay
from sessions_app.ui.svg import BOTTOM, LEFT, TOP, WIDTH, Bar

HEIGHT = 160


@dataclass(frozen=True)
class Chart:
    width: int
    height: int
    bars: list[Bar]
    max_value: int
    first_label: str
    last_label: str
    legend: list[tuple[str, str]]  # (label, colour)
    days: list[ChartDay]
    baseline_y: float
    left: int
    top: int

    @property
    def max_label(self) -> str:
        return f"{self.max_value:,}"

    @property
    def is_empty(self) -> bool:
        return self.max_value == 0


def build_chart(days: list[ChartDay]) -> Chart:
    max_value = max((day.total for day in days), default=0)
    plot_height = HEIGHT - TOP - BOTTOM
    slot = (WIDTH - LEFT) / max(len(days), 1)
    bar_width = max(slot * 0.75, 1.0)
    bars: list[Bar] = []
    for index, day in enumerate(days):
        x = LEFT + index * slot + (slot - bar_width) / 2
        y = float(HEIGHT - BOTTOM)
        for key, label, _kinds in SERIES:
            value = day.counts.get(key, 0)
            if not value:
                continue
            height = plot_height * value / max_value
            y -= height
            bars.append(
                Bar(
                    x=round(x, 2),
                    y=round(y, 2),
                    width=round(bar_width, 2),
                    height=round(height, 2),
                    title=f"{day.day.isoformat()}: {value} {label}",
                    colour=SERIES_COLOURS[key],
                )
            )
    return Chart(
        width=WIDTH,
        height=HEIGHT,
        bars=bars,
        max_value=max_value,
        first_label=days[0].day.strftime("%b %d") if days else "",
        last_label=days[-1].day.strftime("%b %d") if days else "",
        legend=[(label, SERIES_COLOURS[key]) for key, label, _kinds in SERIES],
        days=days,
        baseline_y=HEIGHT - BOTTOM,
        left=LEFT,
        top=TOP,
    )
