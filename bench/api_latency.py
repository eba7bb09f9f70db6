#!/usr/bin/env python3
"""p95 latency of the session list (50 a page, each single filter, and `q`) and of a session's last
50 messages, through the real URL routing, authentication, views and serializers (Django's test
client in-process: no HTTP server, so the figures are the application's own time).

    .venv/bin/python bench/seed.py --database bench_data          # once
    .venv/bin/python bench/api_latency.py --database bench_data [--runs 40]

Targets: list p95 <= 50 ms, messages p95 <= 30 ms. Exit status 1 when a target is missed.
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
LIST_TARGET_MS = 50.0
MESSAGES_TARGET_MS = 30.0


def p95(samples: list[float]) -> float:
    ordered = sorted(samples)
    return ordered[max(0, round(0.95 * len(ordered)) - 1)]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--database", default="bench_data")
    parser.add_argument(
        "--server", default=os.environ.get("BENCH_PG_SERVER", "postgresql://postgres@127.0.0.1:5432")
    )
    parser.add_argument("--runs", type=int, default=40, help="timed requests per case (after 3 warm-ups)")
    args = parser.parse_args()

    sys.path.insert(0, str(ROOT))
    os.environ["DATABASE_URL"] = f"{args.server}/{args.database}"
    os.environ["DJANGO_SETTINGS_MODULE"] = "config.settings"
    os.environ.setdefault("SECRET_KEY", "bench-only-not-a-secret")
    os.environ.setdefault("FIELD_ENCRYPTION_KEYS", BENCH_FIELD_KEY)
    os.environ["ALLOWED_HOSTS"] = "testserver"
    os.environ.pop("REDIS_URL", None)
    os.environ["LOG_LEVEL"] = "WARNING"
    import django

    django.setup()
    from django.db import connection
    from django.test import Client

    from sessions_app.api.keys import issue_key
    from sessions_app.models import ApiKey, Contact, Session

    _, key = issue_key("bench-latency")
    client = Client(HTTP_AUTHORIZATION=f"Bearer {key}")
    try:
        total = Session.objects.count()
        phone = Contact.objects.exclude(phone="").order_by("id").values_list("phone", flat=True)[100]
        owner = Session.objects.exclude(owner=None).values_list("owner_id", flat=True).first()
        print(f"database {args.database}: {total:,} sessions; {args.runs} runs per case\n")

        list_cases = {
            "no filter": "",
            "channel=sms": "channel=sms",
            "status=active": "status=active",
            "status=closed&status=resolved": "status=closed&status=resolved",
            "contact_phone": f"contact_phone={phone.replace('+', '%2B')}",
            "business_id": "business_id=B0042",
            "location_id": "location_id=L0042",
            "owner": f"owner={owner}",
            "agent_id": "agent_id=agent_7",
            "created (last 2 days)": "created_after=" + _ago(2),
            "last_activity (last day)": "last_activity_after=" + _ago(1),
            "ordering=-created_at": "ordering=-created_at",
            "ordering=-message_count": "ordering=-message_count",
            "q=refund (common word)": "q=refund",
            "q=+15550001234 (phone)": "q=%2B15550001234",
            "q=#4242 (rare)": "q=%234242",
            "q=0001234 (end of a phone)": "q=0001234",
            "q=refund parcel (two words)": "q=refund+parcel",
            "q=re (short prefix)": "q=re",
            "q=about refund (0.2% of sessions)": "q=about+refund",
            "q=refund&owner (scoped)": f"q=refund&owner={owner}",
        }
        failed = False
        print(f"{'session list, 50 a page':40} {'p50 ms':>8} {'p95 ms':>8} {'SQL p95':>8}")
        for label, query in list_cases.items():
            samples = _time(client, lambda q=query: f"/api/v1/sessions/?page_size=50&{q}", args.runs)
            worst = p95(samples)
            failed |= worst > LIST_TARGET_MS
            mark = "" if worst <= LIST_TARGET_MS else f"  > {LIST_TARGET_MS:.0f} ms target"
            print(f"{label:40} {statistics.median(samples):8.1f} {worst:8.1f} {p95(SQL_MS):8.1f}{mark}")

        ids = [str(pk) for pk in Session.objects.order_by("?").values_list("id", flat=True)[: args.runs + 3]]
        print(f"\n{'last 50 messages of a session':40} {'p50 ms':>8} {'p95 ms':>8} {'SQL p95':>8}")
        for label, template in {
            "native ?ordering=-created_at": "/api/v1/sessions/{}/messages/?ordering=-created_at&page_size=50",
            "seed 001 ?limit=50": "/agent/api/sessions/{}/messages?limit=50",
        }.items():
            picks = iter(ids)
            samples = _time(client, lambda t=template, p=picks: t.format(next(p)), args.runs)
            worst = p95(samples)
            failed |= worst > MESSAGES_TARGET_MS
            mark = "" if worst <= MESSAGES_TARGET_MS else f"  > {MESSAGES_TARGET_MS:.0f} ms target"
            print(f"{label:40} {statistics.median(samples):8.1f} {worst:8.1f} {p95(SQL_MS):8.1f}{mark}")
    finally:
        ApiKey.objects.filter(name="bench-latency").delete()
        connection.close()
    return 1 if failed else 0


def _ago(days: int) -> str:
    from datetime import timedelta

    from django.utils import timezone

    return (timezone.now() - timedelta(days=days)).strftime("%Y-%m-%dT%H:%M:%SZ")


SQL_MS: list[float] = []


def _time(client, path_for, runs: int) -> list[float]:  # type: ignore[no-untyped-def]
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    samples = []
    SQL_MS.clear()
    for n in range(runs + 3):
        path = path_for()
        started = time.perf_counter()
        with CaptureQueriesContext(connection) as queries:
            response = client.get(path)
        elapsed = (time.perf_counter() - started) * 1000
        if n >= 3:
            SQL_MS.append(sum(float(q["time"]) for q in queries.captured_queries) * 1000)
        if response.status_code != 200:
            raise SystemExit(f"{path}: HTTP {response.status_code} {response.content[:300]!r}")
        if n >= 3:
            samples.append(elapsed)
    return samples


if __name__ == "__main__":
    raise SystemExit(main())
