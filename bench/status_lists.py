"""A page of sessions filtered by several statuses, on the table the sweep benchmark leaves behind.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/bench_sweep .venv/bin/python bench/sweep.py
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/bench_sweep .venv/bin/python bench/status_lists.py

After the sweep, that table has the shape the plain `status IN (…)` query stumbles on: 500,000
abandoned sessions two hours old under ~500,000 newer active ones. Times the first page (51 rows,
newest activity first, contacts joined, as the API and the staff list read it) of "abandoned or
closed" read with the plain `IN` and with `SessionQuerySet.in_statuses` (one slice per status,
merged), the staff list's own page, and one status alone for scale; checks both give the same rows.
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

from benchenv import BENCH_FIELD_KEY

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
ENDED = ("abandoned", "closed")


def timed(read: Callable[[], object], runs: int = 7) -> tuple[float, float]:
    read()  # warm the cache
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        read()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times), max(times)


def main() -> None:
    if not os.environ.get("DATABASE_URL", "").startswith("postgres"):
        sys.exit("set DATABASE_URL to the database bench/sweep.py used")
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    os.environ.setdefault("SECRET_KEY", "bench-only-not-a-secret")
    os.environ.setdefault("FIELD_ENCRYPTION_KEYS", BENCH_FIELD_KEY)
    os.environ.setdefault("ALLOWED_HOSTS", "127.0.0.1")
    os.environ["LOG_LEVEL"] = "WARNING"
    import django

    django.setup()
    from sessions_app.models import Session
    from sessions_app.ui import queries

    order = ("-last_activity_at", "-id")
    reads: dict[str, Callable[[], list[Session]]] = {
        "plain IN": lambda: list(
            Session.objects.filter(status__in=ENDED).select_related("contact").order_by(*order)[:51]
        ),
        "in_statuses (merged)": lambda: list(
            Session.objects.in_statuses(ENDED).select_related("contact").order_by(*order)[:51]
        ),
        "staff list page": lambda: queries.sessions_page(queries.ListFilters(statuses=ENDED)).sessions,
        "one status alone": lambda: list(
            Session.objects.filter(status=ENDED[0]).select_related("contact").order_by(*order)[:51]
        ),
    }
    plain, merged = reads["plain IN"](), reads["in_statuses (merged)"]()
    if not merged or [s.pk for s in plain] != [s.pk for s in merged]:
        sys.exit("the merged page differs from the plain one (or is empty: run bench/sweep.py first)")
    for name, read in reads.items():
        median, worst = timed(read)
        print(f"{name:22} median {median:7.1f} ms, max {worst:7.1f} ms")


if __name__ == "__main__":
    main()
