"""What the staff UI's server-drawn SVG bar charts share (`chart.py`, `reports.py`, `window_chart.py`):
the bar the templates draw, and the layout of the 600-wide charts."""

from __future__ import annotations

from dataclasses import dataclass

# The sessions-per-day chart and the reports page's charts; each picks its own height.
WIDTH = 600
TOP = 14  # room for the maximum's label
BOTTOM = 20  # room for the first and last labels
LEFT = 44  # room for the maximum's label, e.g. "11,124"


@dataclass(frozen=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    title: str  # the tooltip and the accessible text, e.g. "2025-01-31: 4 SMS"
    colour: str = ""  # the fill; empty where the stylesheet colours the bar
    label: str = ""  # text on the axis under the bar, where the chart has one
