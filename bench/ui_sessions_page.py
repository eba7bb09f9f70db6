#!/usr/bin/env python3
"""Server time of the staff sessions page (/sessions/) with 1,000,000 sessions on PostgreSQL.

    .venv/bin/python bench/ui_sessions_page.py                 # seeds bench_ui once, then measures
    .venv/bin/python bench/ui_sessions_page.py --sessions 200000 --runs 10
    BENCH_DATABASE_URL=postgres://postgres@127.0.0.1:5432/other .venv/bin/python bench/ui_sessions_page.py

Seeds its own database (INSERT ... SELECT generate_series: channels of every kind, 200,000
contacts, the sessions spread over 90 days, one message per four sessions) unless it already holds
that many sessions, then requests each view through Django's full request handling (middleware,
auth, templates) in-process, so the number is server time without network. Two numbers per view:
"cold" with the tab-count and chart caches emptied before every request (the worst case, once per
cache lifetime) and "warm" as most requests find them. Target: at most 200 ms.
"""

from __future__ import annotations

import argparse
import html
import os
import re
import statistics
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

from benchenv import BENCH_FIELD_KEY, empty_metadata_token

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

DEFAULT_URL = "postgres://postgres@127.0.0.1:5432/bench_ui"
TARGET_MS = 200.0
NEXT_LINK = re.compile(r'<a href="([^"]+)" rel="next"')


def ensure_database(url: str) -> None:
    import psycopg

    parts = urlsplit(url)
    name = parts.path.lstrip("/")
    admin_url = parts._replace(path="/postgres").geturl()
    with psycopg.connect(admin_url, autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone()
        if not exists:
            conn.execute(f'CREATE DATABASE "{name}"')


def configure(url: str) -> None:
    os.environ["DATABASE_URL"] = url
    os.environ.setdefault("SECRET_KEY", "bench-only-not-a-secret")
    os.environ.setdefault("FIELD_ENCRYPTION_KEYS", BENCH_FIELD_KEY)
    os.environ["ALLOWED_HOSTS"] = "testserver"
    os.environ["DEBUG"] = "false"
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    os.environ.pop("REDIS_URL", None)  # the cache is process-local here: the numbers are the database's
    import django

    django.setup()


SEED_SQL = [
    """
    INSERT INTO sessions_app_channel (kind, address, name, is_active, created_at, business_id)
    SELECT kind, address, '', true, now(), ''
    FROM (VALUES ('sms', '+15005550006'), ('whatsapp', '+15005550006'), ('voice', '+15005550006'),
                 ('web', ''), ('api', '')) AS k(kind, address)
    ON CONFLICT DO NOTHING
    """,
    """
    INSERT INTO sessions_app_contact (phone, whatsapp_id, whatsapp_profile_name, display_name, company,
                                      external_user_id, business_id, created_at, updated_at)
    SELECT '+1555' || lpad(g::text, 7, '0'), '', '', CASE WHEN g % 3 = 0 THEN 'Contact ' || g ELSE '' END,
           '', '', '', now(), now()
    FROM generate_series(1, 200000) AS g
    ON CONFLICT DO NOTHING
    """,
    """
    INSERT INTO sessions_app_session (id, channel_id, channel_kind, contact_id, business_id, location_id,
        agent_id, title, description, thumbnail_url, status, metadata, mission_id, message_count,
        first_message_at, last_message_at, last_activity_at, status_changed_at, created_at, updated_at)
    SELECT gen_random_uuid(), ch.id, ch.kind, c.id, 'biz' || (s.g %% 50), '', '',
           CASE ch.kind WHEN 'sms' THEN 'SMS from ' WHEN 'whatsapp' THEN 'WhatsApp from '
                        WHEN 'voice' THEN 'Call from ' ELSE 'Chat with ' END || c.phone,
           '', '',
           (ARRAY['active','closed','resolved','completed','abandoned','archived'])[1 + (s.g * 7) %% 6],
           %(metadata)s, '', 1 + s.g %% 9, s.created, s.created + s.span, s.created + s.span,
           s.created + s.span, s.created, s.created + s.span
    FROM (
        SELECT g,
               -- Rows arrive in time order, as in production: creation time follows insertion.
               now() - interval '90 days' * (1 - g::float / %(total)s) - random() * interval '10 minutes'
                   AS created,
               random() * interval '30 minutes' AS span,
               CASE WHEN g %% 20 < 8 THEN 'sms' WHEN g %% 20 < 14 THEN 'whatsapp'
                    WHEN g %% 20 < 17 THEN 'voice' WHEN g %% 20 < 19 THEN 'web' ELSE 'api' END AS kind
        FROM generate_series(%(start)s, %(stop)s) AS g
    ) AS s
    JOIN sessions_app_channel ch ON ch.kind = s.kind
    JOIN sessions_app_contact c ON c.phone = '+1555' || lpad((1 + s.g %% 200000)::text, 7, '0')
    """,
]

MESSAGES_SQL = """
    INSERT INTO sessions_app_message (session_id, direction, role, content, media, provider, external_id,
        metadata, delivery_status, reply_state, delivery_error, created_at, reply_attempts, reply_error,
        delivery_attempts)
    SELECT id, 'inbound', 'contact', 'Hello, I have a question about order ' || left(id::text, 8),
           '[]'::jsonb, '', NULL, '{}'::jsonb, '', '', '', created_at, 0, '', 0
    FROM sessions_app_session TABLESAMPLE BERNOULLI (25)
"""


def seed(target: int) -> None:
    from django.core.management import call_command
    from django.db import connection

    from sessions_app.models import Session

    call_command("migrate", "--noinput", verbosity=0)
    call_command("collectstatic", "--noinput", verbosity=0)  # DEBUG off: the manifest storage needs it
    have = Session.objects.count()
    if have >= target:
        print(f"database already holds {have:,} sessions; not seeding")
        return
    print(f"seeding {target - have:,} sessions (once; later runs reuse them)…", flush=True)
    started = time.perf_counter()
    with connection.cursor() as cursor:
        cursor.execute(SEED_SQL[0])
        cursor.execute(SEED_SQL[1])
        batch = 250_000
        for start in range(have + 1, target + 1, batch):
            cursor.execute(
                SEED_SQL[2],
                {
                    "start": start,
                    "stop": min(start + batch - 1, target),
                    "total": target,
                    "metadata": empty_metadata_token(),
                },
            )
            print(f"  {min(start + batch - 1, target):,} sessions", flush=True)
        cursor.execute(MESSAGES_SQL)
        # Autocommit, so VACUUM may run; on a live table autovacuum does this.
        cursor.execute("VACUUM ANALYZE")
    print(f"seeded in {time.perf_counter() - started:.0f}s")


VIEWS = [
    ("all channels (default)", "/sessions/"),
    ("SMS tab", "/sessions/?channel=sms"),
    ("Web & API tab", "/sessions/?channel=web"),
    ("two statuses", "/sessions/?status=active&status=closed"),
    ("business + dates", "/sessions/?business=biz7&from={from_day}&to={to_day}"),
    ("sorted by created", "/sessions/?sort=created"),
    ("second page", "{second_page}"),
    ("live-update poll", "/sessions/updates/?since={since}"),
]


def measure(runs: int) -> bool:
    from datetime import timedelta

    from django.contrib.auth import get_user_model
    from django.core.cache import cache
    from django.test import Client
    from django.utils import timezone

    from sessions_app.ui import queries

    user, _ = get_user_model().objects.get_or_create(username="bench-staff", defaults={"is_staff": True})
    client = Client()
    client.force_login(user)
    first = client.get("/sessions/")
    assert first.status_code == 200, first.status_code
    today = timezone.localdate()
    values = {
        "from_day": (today - timedelta(days=30)).isoformat(),
        "to_day": today.isoformat(),
        "second_page": "/sessions/" + html.unescape(NEXT_LINK.search(first.content.decode()).group(1)),
        "since": (timezone.now() - timedelta(seconds=5)).isoformat().replace("+", "%2B"),
    }
    # "cold" empties the short-lived caches (tab counts, today's chart bar); the past days of the
    # chart are counted once a day, timed on their own here.
    first_day = today - timedelta(days=queries.CHART_DAYS - 1)
    past_key = queries._cache_key("chart-past", first_day, today)
    started = time.perf_counter()
    queries._per_day(first_day, today)
    elapsed = (time.perf_counter() - started) * 1000
    print(f"chart's past {queries.CHART_DAYS - 1} days, counted once a day: {elapsed:.0f} ms")
    ok = True
    print(f"\n{'view':28} {'cold median':>12} {'cold p95':>9} {'warm median':>12} {'warm p95':>9}")
    for label, template in VIEWS:
        url = template.format(**values)
        results = {}
        for mode in ("cold", "warm"):
            timings = []
            for _ in range(runs):
                if mode == "cold":
                    past = cache.get(past_key)
                    cache.clear()
                    cache.set(past_key, past, 3600)
                started = time.perf_counter()
                response = client.get(url)
                timings.append((time.perf_counter() - started) * 1000)
                assert response.status_code == 200, (url, response.status_code)
            timings.sort()
            results[mode] = (statistics.median(timings), timings[max(0, int(len(timings) * 0.95) - 1)])
        flag = "" if results["warm"][0] <= TARGET_MS else "  > target"
        ok = ok and not flag
        print(
            f"{label:28} {results['cold'][0]:10.1f}ms {results['cold'][1]:7.1f}ms "
            f"{results['warm'][0]:10.1f}ms {results['warm'][1]:7.1f}ms{flag}"
        )
    print(f"\ntarget: warm median ≤ {TARGET_MS:.0f} ms per view ({runs} runs each)")
    return ok


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sessions", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()
    url = os.environ.get("BENCH_DATABASE_URL", DEFAULT_URL)
    if not url.startswith("postgres"):
        sys.exit("BENCH_DATABASE_URL must be a postgres:// URL: the target is about PostgreSQL")
    ensure_database(url)
    configure(url)
    seed(args.sessions)
    return 0 if measure(args.runs) else 1


if __name__ == "__main__":
    sys.exit(main())
