"""Reports: response and resolution metrics over a range of days, their daily rollup, and exports.

`metrics.py` defines every figure and computes it live; `rollup.py` keeps past days; `summary.py`
puts the two together; `export.py` streams sessions out. Decisions: docs/reports.md.
"""
