#!/usr/bin/env python3
"""p95 of the what-if window report (`GET /api/v1/channels/{id}/window-report/`) at 5,000,000 messages.

    .venv/bin/python bench/window_report.py                       # 5,000,000 messages, ~6 minutes
    .venv/bin/python bench/window_report.py --messages 500000 --database h22_bench_small

The worst case for one report: one SMS channel whose 5,000,000 inbound messages all fall in the
report's default period (the last 30 days), from 200,000 contacts in 1,000,000 sessions of five
messages each (gaps inside a session of 30 s to 5.5 min, sessions spread over the 30 days). Every
row is generated inside PostgreSQL (INSERT … SELECT over generate_series) in a database of its own
(`--database`, created and migrated if needed, its tables emptied first; dropped at the end unless
`--keep`); then the tables are analyzed, as autovacuum would.

It first builds the channel's daily rollup (`roll_up`, what the beat task does; timed and printed),
then times the product's own `window_report()` (what the API and the staff page run, windows 60,
300 and 900, the default period: the finished days from the rollup, today from the messages)
`--runs` times after one warm-up, and prints p50, p95 and the maximum; target p95 <= 2 s. `--live`
times the report without the rollup (every message of the period replayed). `--explain` prints the
statement's EXPLAIN (ANALYZE, BUFFERS). Exit status 1 on a miss.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import psycopg
from benchenv import BENCH_FIELD_KEY, empty_metadata_token
from psycopg import sql
from seed import ensure_database, log, migrate

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
TARGET_SECONDS = 2.0
CONTACTS = 200_000
PER_SESSION = 5


def generate(url: str, messages: int) -> None:
    sessions = max(1, messages // PER_SESSION)
    contacts = min(CONTACTS, sessions)
    with psycopg.connect(url, autocommit=True) as conn:
        # The search document's triggers stay out (the report reads none): they would compute one
        # document per generated session.
        conn.execute("SET sessions_app.ingest_writes_search = on")
        conn.execute(
            "TRUNCATE sessions_app_message, sessions_app_statuschange, sessions_app_session, "
            "sessions_app_contact, sessions_app_channel CASCADE"
        )
        channel = conn.execute(
            "INSERT INTO sessions_app_channel (kind, address, name, surface, business_id, is_active, "
            "created_at) VALUES ('sms', '+15005550006', 'bench', '', '', true, now()) RETURNING id"
        ).fetchone()[0]
        log(f"{contacts:,} contacts")
        first_contact = conn.execute(
            """
            INSERT INTO sessions_app_contact (phone, whatsapp_id, whatsapp_profile_name, display_name,
                company, external_user_id, business_id, created_at, updated_at)
            SELECT '+1555' || lpad(i::text, 7, '0'), '', '', '', '', '', '', now(), now()
            FROM generate_series(1, %s) i
            RETURNING id
            """,
            [contacts],
        ).fetchone()[0]
        # Each session's start, a fixed function of its number: the messages below find it again.
        start = "now() - interval '30 days' * (abs(hashint4({i})::float8) / 2147483648.0) + interval '1 hour'"
        log(f"{sessions:,} sessions")
        conn.execute(
            sql.SQL(
                """
            INSERT INTO sessions_app_session (id, external_id, channel_id, channel_kind, contact_id,
                business_id, location_id, owner_id, agent_id, title, description, thumbnail_url, status,
                metadata, mission_id, message_count, first_message_at, last_message_at, last_activity_at,
                status_changed_at, created_at, updated_at, search_document, merged_into_id)
            SELECT md5('s' || i)::uuid, NULL, %(channel)s, 'sms', %(first)s + i %% %(contacts)s, '', '', NULL,
                '', 'bench', '', '', 'closed', %(metadata)s, '', {per}, t, t + interval '1400 seconds',
                t + interval '1400 seconds', t, t, t, '', NULL
            FROM (SELECT i, LEAST({start}, now() - interval '1 hour') AS t
                  FROM generate_series(1, %(sessions)s) i) x
            """
            ).format(per=sql.Literal(PER_SESSION), start=sql.SQL(start.format(i="i"))),
            {
                "channel": channel,
                "first": first_contact,
                "contacts": contacts,
                "metadata": empty_metadata_token(),
                "sessions": sessions,
            },
        )
        log(f"{messages:,} inbound messages")
        conn.execute(
            sql.SQL(
                """
            INSERT INTO sessions_app_message (session_id, direction, role, content, media, provider,
                external_id, metadata, delivery_status, reply_state, reply_claimed_at, delivery_error,
                created_at, in_reply_to_id, delivery_attempts, delivery_claimed_at, reply_attempts,
                reply_error)
            SELECT md5('s' || s)::uuid, 'inbound', 'contact', '', '[]', 'twilio', NULL, '{{}}', '', '',
                NULL, '', LEAST({start}, now() - interval '1 hour')
                    + (j %% {per}) * (30 + abs(hashint4(j)) %% 300) * interval '1 second',
                NULL, 0, NULL, 0, ''
            FROM (SELECT j, j / {per} + 1 AS s FROM generate_series(0, %(messages)s - 1) j) x
            """
            ).format(per=sql.Literal(PER_SESSION), start=sql.SQL(start.format(i="s"))),
            {"messages": sessions * PER_SESSION},
        )
        log("analyze")
        conn.execute("ANALYZE sessions_app_contact")
        conn.execute("ANALYZE sessions_app_session")
        conn.execute("ANALYZE sessions_app_message")


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--messages", type=int, default=5_000_000)
    parser.add_argument("--database", default="h22_bench")
    parser.add_argument("--server", default="postgresql://postgres@127.0.0.1:5432")
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--skip-generate", action="store_true", help="time the rows already there")
    parser.add_argument("--keep", action="store_true", help="keep the database afterwards")
    parser.add_argument("--explain", action="store_true")
    parser.add_argument("--live", action="store_true", help="time the report without the daily rollup")
    args = parser.parse_args()
    url = f"{args.server}/{args.database}"
    if not args.skip_generate:
        ensure_database(args.server, args.database)
        migrate(url)
        started = time.perf_counter()
        generate(url, args.messages)
        log(f"generated in {time.perf_counter() - started:.0f} s")

    os.environ["DATABASE_URL"] = url
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    os.environ.setdefault("SECRET_KEY", "bench-only-not-a-secret")
    os.environ.setdefault("FIELD_ENCRYPTION_KEYS", BENCH_FIELD_KEY)
    os.environ["ALLOWED_HOSTS"] = "localhost"
    os.environ.pop("REDIS_URL", None)
    os.environ["LOG_LEVEL"] = "WARNING"
    os.environ["DATA_DIR"] = tempfile.mkdtemp(prefix="bench-window-report-")
    import django

    django.setup()
    from django.db import connection
    from django.utils import timezone

    from sessions_app.ingest.window_report import (
        DEFAULT_WINDOWS,
        ReportQuery,
        roll_up,
        rolled_days,
        window_report,
    )
    from sessions_app.models import Channel, WindowRollupState

    channel = Channel.objects.get()
    query = ReportQuery.parse(None, None, None, now=timezone.now())  # the default period
    since, until = query.since, query.until
    if args.live:  # no rollup state: the product's function replays every message
        WindowRollupState.objects.filter(channel=channel).delete()
    else:
        started = time.perf_counter()
        rows = roll_up(channel)
        elapsed = time.perf_counter() - started
        print(f"roll_up (first, whole history): {elapsed:.1f} s, {rows:,} (contact, day) rows")
        assert rolled_days(channel, since, until) is not None

    def run() -> object:
        return window_report(channel, DEFAULT_WINDOWS, since, until)

    report = run()  # warm-up
    samples = []
    for _ in range(args.runs):
        start = time.perf_counter()
        run()
        samples.append(time.perf_counter() - start)
    ordered = sorted(samples)
    p95 = ordered[max(0, round(0.95 * len(ordered)) - 1)]
    path = "messages only" if args.live else "rollup, today from the messages"
    print(f"{path}: {report.messages:,} messages from {report.contacts:,} contacts")  # type: ignore[attr-defined]
    print("windows:", report.as_dict()["windows"])  # type: ignore[attr-defined]
    print(
        f"window_report over {args.runs} runs: p50 {statistics.median(samples):.3f} s, "
        f"p95 {p95:.3f} s, max {max(samples):.3f} s (target p95 <= {TARGET_SECONDS} s)"
    )
    if args.explain:
        from sessions_app.ingest import window_report as module

        with connection.cursor() as cursor:
            cursor.execute(f"SET work_mem = '{module.WORK_MEM}'")
            if args.live:
                text, params = (
                    module.statement(),
                    module.statement_params(channel, DEFAULT_WINDOWS, since, until),
                )
            else:
                text, params = (
                    module.rolled_statement(),
                    module.rolled_params(channel, DEFAULT_WINDOWS, since, until),
                )
            cursor.execute("EXPLAIN (ANALYZE, BUFFERS) " + text, params)
            print("\n".join(row[0] for row in cursor.fetchall()))
    connection.close()
    if not args.keep:
        with psycopg.connect(f"{args.server}/postgres", autocommit=True) as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(args.database))
            )
    return 0 if p95 <= TARGET_SECONDS else 1


if __name__ == "__main__":
    sys.exit(main())
