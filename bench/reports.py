"""Benchmark the report summary: p50/p95 of GET /api/v1/reports/summary/ over 90 days.

    .venv/bin/python bench/seed.py --database bench_reports        # 1,000,000 sessions, 5,000,000 messages
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/bench_reports .venv/bin/python bench/reports.py

On a database bench/seed.py filled (30 days of sessions, all inside the 90 days asked for), it first
prepares what the seed lacks, once: status changes (closed, resolved and abandoned sessions get
their transition, a tenth of the ended ones a reopen), and the session, message and status-change
tables rewritten in time order, as production writes them (the seed writes messages session by session,
which would leave their BRIN index nothing to skip). Then it runs the rollup task until every past
day is rolled up (timed), and calls the endpoint in-process through Django's full stack with an
API key: four kinds of request (everything, one channel, one business, by week), each `--requests`
times after two warm-ups. Today is computed live in every request. Target: p95 under 300 ms.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=30)
    args = parser.parse_args()
    django_setup()
    from datetime import timedelta

    from django.db import connection
    from django.test import Client
    from django.utils import timezone

    from sessions_app.api.keys import issue_key
    from sessions_app.models import DailyRollup, Message, Session, StatusChange
    from sessions_app.reports.rollup import refresh_rollups

    prepare()
    print(
        f"rows: {Session.objects.count():,} sessions, {Message.objects.count():,} messages, "
        f"{StatusChange.objects.count():,} status changes",
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
    key = issue_key("bench-reports")[1]
    client = Client(HTTP_AUTHORIZATION=f"Bearer {key}")
    until = timezone.localdate()
    since = until - timedelta(days=89)
    base = f"/api/v1/reports/summary/?since={since}&until={until}"
    variants = {
        "everything": base,
        "channel=sms": base + "&channel=sms",
        "business_id=B0007": base + "&business_id=B0007",
        "group_by=week": base + "&group_by=week",
    }
    worst = 0.0
    for name, url in variants.items():
        for _ in range(2):
            assert client.get(url).status_code == 200
        times = []
        for _ in range(args.requests):
            started = time.perf_counter()
            response = client.get(url)
            times.append(time.perf_counter() - started)
            assert response.status_code == 200, response.content
        body = response.json()
        times.sort()
        p95 = times[max(0, round(0.95 * len(times)) - 1)]
        worst = max(worst, p95)
        print(
            f"{name:>20}: p50 {statistics.median(times) * 1000:6.1f} ms, p95 {p95 * 1000:6.1f} ms "
            f"({body['computed']}, {body['sessions_opened']:,} sessions)",
            flush=True,
        )
    connection.close()
    verdict = "meets" if worst < TARGET_P95 else "misses"
    print(f"worst p95 {worst * 1000:.1f} ms: {verdict} the {TARGET_P95 * 1000:.0f} ms target")


if __name__ == "__main__":
    main()
