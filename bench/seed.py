#!/usr/bin/env python3
"""Seed a PostgreSQL database of its own with realistic sessions, for the API and UI benchmarks.

    .venv/bin/python bench/seed.py                                   # 1,000,000 sessions, 5,000,000 messages
    .venv/bin/python bench/seed.py --sessions 100000 --messages 500000 --database bench_small

Creates the database if needed, migrates it, empties the domain tables, then generates every row
inside PostgreSQL (INSERT … SELECT over generate_series: no rows travel through Python, which is
what makes millions of rows take a minute or two). Secondary indexes are dropped during the load and
rebuilt afterwards, which is several times faster than maintaining them row by row.

Spread: 30 days of history; channels sms 40%, whatsapp 20%, voice 10%, web 10%, api 20%; statuses
active 20%, closed 25%, resolved 15%, completed 10%, abandoned 15%, archived 15%; 200 businesses,
1,000 locations, 50 agents; one contact per four sessions (three in four with a phone number);
100 users owning the web and API sessions; messages alternate contact / agent.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

import psycopg
from benchenv import BENCH_FIELD_KEY, empty_metadata_token
from psycopg import sql

ROOT = Path(__file__).resolve().parent.parent
TABLES = ["sessions_app_message", "sessions_app_statuschange", "sessions_app_session", "sessions_app_contact"]
WORDS = [
    "appointment",
    "booking",
    "cancel",
    "refund",
    "delivery",
    "parcel",
    "invoice",
    "payment",
    "order",
    "account",
    "password",
    "login",
    "reset",
    "price",
    "quote",
    "discount",
    "coupon",
    "shipping",
    "tracking",
    "address",
    "change",
    "update",
    "schedule",
    "tomorrow",
    "today",
    "morning",
    "evening",
    "weekend",
    "holiday",
    "dentist",
    "cleaning",
    "checkup",
    "filling",
    "crown",
    "implant",
    "emergency",
    "pain",
    "insurance",
    "coverage",
    "claim",
    "receipt",
    "warranty",
    "repair",
    "replace",
    "broken",
    "damaged",
    "missing",
    "late",
    "early",
    "confirm",
    "reminder",
    "question",
    "help",
    "support",
    "agent",
    "human",
    "manager",
    "complaint",
    "feedback",
    "thanks",
    "great",
    "problem",
    "issue",
    "error",
    "failed",
    "declined",
    "approved",
    "pending",
    "status",
    "number",
    "email",
    "phone",
    "message",
    "call",
    "voicemail",
    "callback",
    "available",
    "unavailable",
    "open",
    "closed",
    "hours",
    "location",
    "parking",
    "directions",
    "map",
    "menu",
    "table",
    "reservation",
    "party",
    "guests",
    "allergy",
    "vegetarian",
    "vegan",
    "gluten",
    "drink",
    "dessert",
    "special",
    "offer",
    "subscription",
    "plan",
    "upgrade",
    "downgrade",
    "renew",
    "expire",
    "trial",
    "free",
    "premium",
    "basic",
    "family",
    "student",
    "senior",
    "product",
    "size",
    "color",
    "stock",
    "return",
    "exchange",
    "gift",
    "card",
    "balance",
    "points",
    "loyalty",
    "member",
    "signup",
    "profile",
]


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def ensure_database(server_url: str, name: str) -> None:
    with psycopg.connect(f"{server_url}/postgres", autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone()
        if not exists:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
            log(f"created database {name}")


def migrate(database_url: str) -> None:
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "SECRET_KEY": os.environ.get("SECRET_KEY", "bench-only-not-a-secret"),
        "ALLOWED_HOSTS": "localhost",
        "FIELD_ENCRYPTION_KEYS": BENCH_FIELD_KEY,
    }
    env.pop("REDIS_URL", None)
    subprocess.run([sys.executable, "manage.py", "migrate", "-v", "0"], cwd=ROOT, env=env, check=True)


def secondary_indexes(conn: psycopg.Connection) -> list[tuple[str, str]]:
    """(name, definition) of every index on the loaded tables that is not a primary key."""
    rows = conn.execute(
        """
        SELECT i.indexname, i.indexdef FROM pg_indexes i
        JOIN pg_class c ON c.relname = i.indexname
        JOIN pg_index x ON x.indexrelid = c.oid
        WHERE i.tablename = ANY(%s) AND NOT x.indisprimary
          AND NOT EXISTS (SELECT 1 FROM pg_constraint k WHERE k.conindid = c.oid)
        """,
        [TABLES],
    ).fetchall()
    return [(r[0], r[1]) for r in rows]


def seed(conn: psycopg.Connection, sessions: int, messages: int) -> None:
    contacts = max(1, sessions // 4)
    users = 100
    words = "ARRAY[" + ",".join(f"'{w}'" for w in WORDS) + "]"
    nwords = len(WORDS)
    run = conn.execute

    run("SET maintenance_work_mem = '512MB'")
    run("SET synchronous_commit = off")
    # Definitions are kept in a table until rebuilt, so an interrupted run loses no index.
    run("CREATE TABLE IF NOT EXISTS bench_dropped_indexes (name text PRIMARY KEY, definition text NOT NULL)")
    for name, definition in secondary_indexes(conn):
        run("INSERT INTO bench_dropped_indexes VALUES (%s, %s) ON CONFLICT DO NOTHING", [name, definition])
    indexes = [(r[0], r[1]) for r in run("SELECT name, definition FROM bench_dropped_indexes").fetchall()]
    log(f"dropping {len(indexes)} secondary indexes for the load")
    for name, _ in indexes:
        run(sql.SQL("DROP INDEX IF EXISTS {}").format(sql.Identifier(name)))
    run(f"TRUNCATE {', '.join(TABLES)} RESTART IDENTITY CASCADE")
    for table in TABLES:
        run(sql.SQL("ALTER TABLE {} DISABLE TRIGGER ALL").format(sql.Identifier(table)))

    run(
        """
        INSERT INTO sessions_app_channel (kind, address, name, reuse_window, abandon_after, archive_after,
                                          is_active, created_at, business_id, surface)
        VALUES ('sms', '+15005550001', 'Main SMS', NULL, NULL, NULL, true, now(), '', ''),
               ('whatsapp', '+15005550002', 'WhatsApp', NULL, NULL, NULL, true, now(), '', ''),
               ('voice', '+15005550003', 'Voice', NULL, NULL, NULL, true, now(), '', ''),
               ('web', '', 'Web chat', NULL, NULL, NULL, true, now(), '', ''),
               ('api', '', 'API', NULL, NULL, NULL, true, now(), '', '')
        ON CONFLICT (kind, address, surface) DO NOTHING
        """
    )
    channel = dict(
        run(
            "SELECT kind, id FROM sessions_app_channel WHERE kind IN ('sms','whatsapp','voice','web','api') "
            "AND (address = '' OR address LIKE '+1500555000_')"
        ).fetchall()
    )
    run(
        """
        INSERT INTO auth_user (password, is_superuser, username, first_name, last_name, email, is_staff,
                               is_active, date_joined)
        SELECT '!', false, 'bench_user_' || u, '', '', '', false, true, now()
        FROM generate_series(1, %s) u
        ON CONFLICT (username) DO NOTHING
        """,
        [users],
    )
    first_user = run("SELECT min(id) FROM auth_user WHERE username LIKE 'bench_user_%%'").fetchone()[0]

    t = time.monotonic()
    run(
        f"""
        INSERT INTO sessions_app_contact (id, phone, whatsapp_id, whatsapp_profile_name, display_name,
                                          company,
                                          external_user_id, business_id, created_at, updated_at)
        SELECT c,
               CASE WHEN c %% 4 <> 0 THEN '+1555' || lpad(c::text, 7, '0') ELSE '' END,
               '', '',
               CASE WHEN c %% 3 = 0 THEN initcap(({words})[1 + (c * 7) %% {nwords}]) || ' ' || c ELSE '' END,
               '',
               CASE WHEN c %% 4 = 0 THEN 'user_' || c ELSE '' END,
               CASE WHEN c %% 4 = 0 THEN 'B' || lpad((c %% 200)::text, 4, '0') ELSE '' END,
               now() - interval '31 days', now() - interval '31 days'
        FROM generate_series(1::bigint, %s) c
        """,
        [contacts],
    )
    run("SELECT setval(pg_get_serial_sequence('sessions_app_contact', 'id'), %s)", [contacts])
    log(f"{contacts:,} contacts in {time.monotonic() - t:.0f}s")

    # Session i: kind by i %% 10, status by (i * 31) %% 100, created within the last 30 days.
    t = time.monotonic()
    per, extra = divmod(messages, sessions)
    run(
        f"""
        INSERT INTO sessions_app_session (id, external_id, channel_id, channel_kind, contact_id, business_id,
            location_id, owner_id, agent_id, title, description, thumbnail_url, status, metadata, mission_id,
            message_count, first_message_at, last_message_at, last_activity_at, status_changed_at,
            created_at, updated_at)
        SELECT md5('s' || i)::uuid, NULL, ch.id, ch.kind, 1 + (i * 7919) %% %(contacts)s,
               'B' || lpad((i %% 200)::text, 4, '0'), 'L' || lpad((i %% 1000)::text, 4, '0'),
               CASE WHEN ch.kind IN ('web', 'api') THEN %(first_user)s + i %% %(users)s END,
               'agent_' || (i %% 50),
               CASE ch.kind WHEN 'sms' THEN 'SMS from ' WHEN 'whatsapp' THEN 'WhatsApp from '
                    WHEN 'voice' THEN 'Call from ' ELSE 'Chat with ' END || '+1555' || lpad(i::text, 7, '0'),
               CASE WHEN i %% 5 = 0 THEN 'About ' || ({words})[1 + (i * 13) %% {nwords}] ELSE '' END,
               '',
               CASE WHEN s < 20 THEN 'active' WHEN s < 45 THEN 'closed' WHEN s < 60 THEN 'resolved'
                    WHEN s < 70 THEN 'completed' WHEN s < 85 THEN 'abandoned' ELSE 'archived' END,
               %(metadata)s, '',
               n, created, created + (n - 1) * interval '1 minute', created + (n - 1) * interval '1 minute',
               created + n * interval '1 minute', created, created + n * interval '1 minute'
        FROM (
            SELECT i, (i * 31) %% 100 AS s,
                   CASE WHEN i %% 10 < 4 THEN 'sms' WHEN i %% 10 < 6 THEN 'whatsapp'
                        WHEN i %% 10 = 6 THEN 'voice'
                        WHEN i %% 10 = 7 THEN 'web' ELSE 'api' END AS kind,
                   %(per)s + CASE WHEN i <= %(extra)s THEN 1 ELSE 0 END AS n,
                   now() - ((i::bigint * 2654435761) %% 2592000) * interval '1 second' AS created
            FROM generate_series(1::bigint, %(sessions)s) i
        ) g JOIN sessions_app_channel ch ON ch.id = (%(channel_ids)s::bigint[])[
            CASE g.kind WHEN 'sms' THEN 1 WHEN 'whatsapp' THEN 2 WHEN 'voice' THEN 3
                        WHEN 'web' THEN 4 ELSE 5 END]
        """,
        {
            "contacts": contacts,
            "first_user": first_user,
            "users": users,
            "per": per,
            "extra": extra,
            "sessions": sessions,
            "metadata": empty_metadata_token(),
            "channel_ids": [
                channel["sms"],
                channel["whatsapp"],
                channel["voice"],
                channel["web"],
                channel["api"],
            ],
        },
    )
    log(f"{sessions:,} sessions in {time.monotonic() - t:.0f}s")

    # Message j belongs to session ((j - 1) %% N) + 1 and is its k-th message, k = (j - 1) / N.
    t = time.monotonic()
    run(
        f"""
        INSERT INTO sessions_app_message (session_id, direction, role, content, media, provider, external_id,
            metadata, delivery_status, in_reply_to_id, reply_state, reply_claimed_at, delivery_error,
            created_at, reply_attempts, reply_error, delivery_attempts, delivery_claimed_at)
        SELECT md5('s' || i)::uuid,
               CASE WHEN k %% 2 = 0 THEN 'inbound' ELSE 'outbound' END,
               CASE WHEN k %% 2 = 0 THEN 'contact' ELSE 'agent' END,
               ({words})[1 + (j * 7) %% {nwords}] || ' ' || ({words})[1 + (j * 11) %% {nwords}] || ' ' ||
               ({words})[1 + (j * 13) %% {nwords}] || ' ' || ({words})[1 + (j * 17) %% {nwords}] || ' ' ||
               ({words})[1 + (j * 19) %% {nwords}] || ' #' || (j %% 100000),
               '[]'::jsonb, '', NULL, '{{}}'::jsonb, '', NULL, '', NULL, '',
               now() - ((i::bigint * 2654435761) %% 2592000) * interval '1 second' + k * interval '1 minute',
               0, '', 0, NULL
        FROM (SELECT j, ((j - 1) %% %(sessions)s) + 1 AS i, (j - 1) / %(sessions)s AS k
              FROM generate_series(1::bigint, %(messages)s) j) g
        """,
        {"sessions": sessions, "messages": messages},
    )
    log(f"{messages:,} messages in {time.monotonic() - t:.0f}s")

    # The load ran with triggers off, so the search documents (migration 0008_search) are filled
    # here, by the migration's own function, before their index is rebuilt.
    t = time.monotonic()
    run("SELECT session_search_backfill()")
    log(f"search documents in {time.monotonic() - t:.0f}s")

    for table in TABLES:
        run(sql.SQL("ALTER TABLE {} ENABLE TRIGGER ALL").format(sql.Identifier(table)))
    for name, definition in indexes:
        t = time.monotonic()
        run(definition)
        run("DELETE FROM bench_dropped_indexes WHERE name = %s", [name])
        log(f"rebuilt index {name} in {time.monotonic() - t:.0f}s")
    t = time.monotonic()
    run("ANALYZE")
    log(f"analyzed in {time.monotonic() - t:.0f}s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sessions", type=int, default=1_000_000)
    parser.add_argument("--messages", type=int, default=5_000_000)
    parser.add_argument("--database", default="bench_data", help="database name (created if missing)")
    parser.add_argument(
        "--server",
        default=os.environ.get("BENCH_PG_SERVER", "postgresql://postgres@127.0.0.1:5432"),
        help="server URL without a database name",
    )
    args = parser.parse_args()
    if args.sessions < 1 or args.messages < 0:
        parser.error("--sessions must be at least 1 and --messages at least 0")
    started = time.monotonic()
    ensure_database(args.server, args.database)
    database_url = f"{args.server}/{args.database}"
    log("migrating")
    migrate(database_url)
    with psycopg.connect(database_url, autocommit=True) as conn:
        seed(conn, args.sessions, args.messages)
    log(f"done in {time.monotonic() - started:.0f}s: DATABASE_URL={database_url}")


if __name__ == "__main__":
    main()
