"""Benchmark the report summary: p50/p95 of GET /api/v1/reports/summary/ over 90 days, cold.

    .venv/bin/python bench/seed.py --database bench_reports        # 1,000,000 sessions, 5,000,000 messages
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/bench_reports .venv/bin/python bench/reports.py

On a database bench/seed.py filled (30 days of sessions up to now, all inside the 90 days asked for),
it first prepares what the seed lacks, once: status changes (closed, resolved and abandoned sessions
get their transition, a tenth of the ended ones a reopen), and the session, message and status-change
tables rewritten in time order, as production writes them (the seed writes messages session by
session, which would leave their BRIN index nothing to skip).

Today is the expensive day, and how much of it there is depends on the hour: so by default
(`--time-zone auto`) TIME_ZONE is the fixed-offset zone (Etc/GMT±N) in which it is now 22:00-23:59,
and today holds 22 to 24 hours of the seed's sessions (about 31,000). Then:

1. the rollup task until every past day is rolled up (timed);
2. today computed live, as a request without a fresh rollup of today does (and with JIT on, the
   alternative), and today's provisional rollup as the beat task computes it (`refresh_today`);
3. the endpoint in-process through Django's full stack with an API key, four kinds of request
   (everything, one channel, one business, by week), each `--requests` times after one warm-up,
   the cache emptied before every request: today is read from its provisional rollup, which is
   recomputed (outside the timing) whenever it is half its REPORTS_TODAY_MAX_AGE old;
4. the fallback: `--live-requests` requests for everything with today's rollup too old to read, so
   today is computed live (what a request costs when the beat task is not running).

Target: p95 under 300 ms for every request. Wall times on a shared machine: the load average is
printed with them.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from benchenv import BENCH_FIELD_KEY

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
TARGET_P95 = 0.300


def django_setup() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    os.environ.setdefault("SECRET_KEY", "bench-only-not-a-secret")
    os.environ.setdefault("FIELD_ENCRYPTION_KEYS", BENCH_FIELD_KEY)
    os.environ.setdefault("ALLOWED_HOSTS", "testserver")
    os.environ.pop("REDIS_URL", None)
    os.environ["LOG_LEVEL"] = "WARNING"
    import django

    django.setup()


PREPARE = [
    # Transitions of the ended sessions, at their last activity.
    """
    INSERT INTO sessions_app_statuschange (session_id, from_status, to_status, actor, reason, created_at)
    SELECT id, 'active', status, 'bench', '', status_changed_at
      FROM sessions_app_session WHERE status IN ('closed', 'resolved', 'abandoned')
    """,
    # A tenth of the closed or resolved sessions reopened ten minutes later.
    """
    INSERT INTO sessions_app_statuschange (session_id, from_status, to_status, actor, reason, created_at)
    SELECT id, status, 'active', 'system:reopen', '', status_changed_at + interval '10 minutes'
      FROM sessions_app_session WHERE status IN ('closed', 'resolved') AND abs(hashtext(id::text)) % 10 = 0
    """,
    "CREATE INDEX bench_message_time ON sessions_app_message (created_at)",
    "CLUSTER sessions_app_message USING bench_message_time",
    "DROP INDEX bench_message_time",
    "CREATE INDEX bench_change_time ON sessions_app_statuschange (created_at)",
    "CLUSTER sessions_app_statuschange USING bench_change_time",
    "DROP INDEX bench_change_time",
    # Sessions too: production inserts them in creation order; the seed in a shuffled one.
    "CLUSTER sessions_app_session USING session_created_recent",
    "CREATE TABLE bench_reports_prepared ()",
    "ANALYZE",
]


def prepare() -> None:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT to_regclass('bench_reports_prepared') IS NOT NULL")
        if cursor.fetchone()[0]:
            return
        for statement in PREPARE:
            started = time.monotonic()
            cursor.execute(statement)
            print(
                f"prepare: {statement.split(chr(10))[0].strip() or statement.strip()[:60]}"
                f" … {time.monotonic() - started:.1f}s",
                flush=True,
            )


def late_zone() -> str:
    """The Etc/GMT zone in which it is now 22:00-23:59 (POSIX signs: Etc/GMT+2 is UTC-2)."""
    now = datetime.now(UTC)
    offset = ((23 if now.minute < 30 else 22) - now.hour) % 24
    if offset > 14:
        offset -= 24
    return "Etc/GMT" if offset == 0 else f"Etc/GMT{-offset:+d}"


def percentiles(times: list[float]) -> str:
    times = sorted(times)
    p95 = times[max(0, round(0.95 * len(times)) - 1)]
    return f"p50 {statistics.median(times) * 1000:7.1f} ms, p95 {p95 * 1000:7.1f} ms"


def p95_of(times: list[float]) -> float:
    return sorted(times)[max(0, round(0.95 * len(times)) - 1)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=30)
    parser.add_argument("--live-requests", type=int, default=5)
    parser.add_argument("--time-zone", default="auto", help="TIME_ZONE for the run; auto: where it is 22-24h")
    args = parser.parse_args()
    os.environ["TIME_ZONE"] = late_zone() if args.time_zone == "auto" else args.time_zone
    django_setup()
    from datetime import timedelta
    from zoneinfo import ZoneInfo

    from django.conf import settings
    from django.core.cache import cache
    from django.db import connection, transaction
    from django.test import Client
    from django.utils import timezone

    from sessions_app.api.keys import issue_key
    from sessions_app.models import DailyRollup, Message, RollupDay, Session, StatusChange
    from sessions_app.reports import metrics
    from sessions_app.reports.rollup import refresh_rollups, refresh_today, today_in

    prepare()
    tz = ZoneInfo(settings.TIME_ZONE)
    today = today_in(tz)
    local = timezone.now().astimezone(tz)
    print(
        f"load average {os.getloadavg()[0]:.2f}; TIME_ZONE {tz.key}, now {local:%Y-%m-%d %H:%M}", flush=True
    )
    print(
        f"rows: {Session.objects.count():,} sessions, {Message.objects.count():,} messages, "
        f"{StatusChange.objects.count():,} status changes; today: "
        f"{Session.objects.filter(created_at__gte=metrics.start_of(today, tz)).count():,} sessions, "
        f"{Message.objects.filter(created_at__gte=metrics.start_of(today, tz)).count():,} messages",
        flush=True,
    )
    started = time.monotonic()
    computed = 0
    while True:
        result = refresh_rollups(budget=600)
        computed += result.computed
        if not result.pending:
            break
    print(
        f"rollup: {computed} day(s) computed in {time.monotonic() - started:.1f}s "
        f"({DailyRollup.objects.count():,} rows)",
        flush=True,
    )

    def timed(fn: Any, runs: int = 3) -> list[float]:
        times = []
        for _ in range(runs):
            started = time.perf_counter()
            fn()
            times.append(time.perf_counter() - started)
        return times

    def today_with_jit() -> None:
        with transaction.atomic():
            metrics._collect(
                {},
                metrics.start_of(today, tz),
                metrics.start_of(today + timedelta(days=1), tz),
                tz,
                metrics.Selection(),
            )

    for name, fn in (
        ("today live (live_figures)", lambda: metrics.live_figures(today, today, tz, metrics.Selection())),
        ("today live, JIT on", today_with_jit),
        ("today's rollup (refresh_today)", lambda: refresh_today(min_gap=timedelta(0))),
    ):
        times = timed(fn)
        print(f"{name:>32}: " + ", ".join(f"{t * 1000:.0f}" for t in times) + " ms", flush=True)

    max_age = timedelta(seconds=settings.REPORTS_TODAY_MAX_AGE)

    def keep_today_fresh() -> None:
        row = RollupDay.objects.get(day=today)
        if row.computed_at < timezone.now() - max_age / 2:
            refresh_today(min_gap=timedelta(0))

    key = issue_key("bench-reports")[1]
    client = Client(HTTP_AUTHORIZATION=f"Bearer {key}")
    since = today - timedelta(days=89)
    base = f"/api/v1/reports/summary/?since={since}&until={today}"
    variants = {
        "everything": base,
        "channel=sms": base + "&channel=sms",
        "business_id=B0007": base + "&business_id=B0007",
        "group_by=week": base + "&group_by=week",
    }
    worst = 0.0

    def measure(url: str, runs: int, before: Any) -> tuple[list[float], dict[str, Any]]:
        times = []
        body: dict[str, Any] = {}
        for _ in range(runs):
            before()
            cache.clear()
            started = time.perf_counter()
            response = client.get(url)
            times.append(time.perf_counter() - started)
            assert response.status_code == 200, response.content
            body = response.json()
        return times, body

    print(f"load average {os.getloadavg()[0]:.2f}", flush=True)
    for name, url in variants.items():
        measure(url, 1, keep_today_fresh)
        times, body = measure(url, args.requests, keep_today_fresh)
        assert body["computed"]["rollup_days"] == 31, body["computed"]  # today from its rollup
        worst = max(worst, p95_of(times))
        print(
            f"{name:>20}: {percentiles(times)} ({body['computed']}, {body['sessions_opened']:,} sessions)",
            flush=True,
        )

    def today_too_old() -> None:
        RollupDay.objects.filter(day=today).update(computed_at=timezone.now() - 2 * max_age)

    if args.live_requests:
        times, body = measure(base, args.live_requests, today_too_old)
        print(
            f"{'everything, today live':>20}: {percentiles(times)} ({body['computed']}; the fallback)",
            flush=True,
        )
    print(f"load average {os.getloadavg()[0]:.2f}", flush=True)
    connection.close()
    verdict = "meets" if worst < TARGET_P95 else "misses"
    target = f"{TARGET_P95 * 1000:.0f} ms"
    print(f"worst p95 (today from its rollup) {worst * 1000:.1f} ms: {verdict} the {target} target")


if __name__ == "__main__":
    main()
