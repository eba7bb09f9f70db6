"""Benchmark the lifecycle sweep on PostgreSQL: 1,000,000 sessions, half of them due.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/bench_sweep .venv/bin/python bench/sweep.py

Reports one full sweep's rate (transitions a second), its longest single statement, and the
throughput of the ingest path (`record_phone_message`, the webhooks' service) in processes running
while the sweep runs, with the count of errors and of messages missing afterwards. Then the same
statement on a yardstick (a session table with only what that statement needs, the same rows),
under the same ingest load, and the sweep's rate as a ratio of the yardstick's. The database
named in DATABASE_URL is dropped and created again: give it one of its own.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlsplit

from benchenv import BENCH_FIELD_KEY, empty_metadata_token, process_cpu_seconds

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def django_setup(data_dir: str) -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    os.environ.setdefault("SECRET_KEY", "bench-only-not-a-secret")
    os.environ.setdefault("FIELD_ENCRYPTION_KEYS", BENCH_FIELD_KEY)
    os.environ.setdefault("ALLOWED_HOSTS", "127.0.0.1")
    os.environ["DATA_DIR"] = data_dir  # the filesystem broker the ingest path enqueues to
    os.environ.pop("REDIS_URL", None)
    os.environ["LOG_LEVEL"] = "WARNING"
    import django

    django.setup()


# The sessions that are not due were active a minute before they were generated and become due 29
# minutes later: a copy of generated sessions is good for this long.
TEMPLATE_FRESH_FOR = 20 * 60
# One full sweep of 500,000 due sessions with ingest running beside it (docs/sweep.md, "Stop 18").
RATE_TARGET = 20_000  # transitions a second
STATEMENT_LIMIT = 1.0  # seconds: no single statement longer (its row locks hold ingest back that long)


def recreate_database(url: str, template: bool = False) -> bool:
    """Drop and create the database; with `template`, as a copy of `<name>_template` when that was
    generated less than TEMPLATE_FRESH_FOR ago.

    Returns whether it was copied (then it holds the generated sessions already)."""
    import psycopg

    parts = urlsplit(url)
    name = parts.path.lstrip("/")
    if not name.startswith("bench"):
        sys.exit(f"refusing to drop {name!r}: the benchmark database's name must start with 'bench'")
    admin = url.replace(parts.path, "/postgres")
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
        generated = (
            template
            and conn.execute(
                "SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = %s",
                [f"{name}_template"],
            ).fetchone()
        )
        copy = bool(generated and generated[0] and time.time() - float(generated[0]) < TEMPLATE_FRESH_FOR)
        if copy:
            conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{name}_template" STRATEGY FILE_COPY')
        else:
            conn.execute(f'CREATE DATABASE "{name}"')
    return bool(copy)


def save_template(url: str, generated_at: float) -> None:
    import psycopg

    parts = urlsplit(url)
    name = parts.path.lstrip("/")
    admin = url.replace(parts.path, "/postgres")
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}_template"')
        conn.execute(f'CREATE DATABASE "{name}_template" TEMPLATE "{name}" STRATEGY FILE_COPY')
        conn.execute(f"COMMENT ON DATABASE \"{name}_template\" IS '{generated_at}'")


# Rows `i` and their last activity `t`, to select from with `%s` = how many: even rows quiet for two
# hours (due for abandonment), odd rows a minute ago (not due), interleaved. The sweep's table, its
# yardstick and bench/sweep_designs.py's tables all hold these rows.
GENERATED_TIMES = """
    SELECT i, now() - CASE WHEN i %% 2 = 0 THEN interval '2 hours' ELSE interval '1 minute' END
        - (i %% 1000) * interval '1 millisecond' AS t
    FROM generate_series(1, %s) AS i
"""


def generate(sessions: int, contacts: int, last_write_order: bool = False) -> int:
    from django.db import connection

    from sessions_app.models import Channel

    channel = Channel.objects.create(kind="sms", address="+15005550006")
    with connection.cursor() as cursor:
        cursor.execute(
            """
            INSERT INTO sessions_app_contact (phone, whatsapp_id, whatsapp_profile_name, display_name,
                company, external_user_id, business_id, created_at, updated_at)
            SELECT '+1555' || lpad(i::text, 7, '0'), '', '', '', '', '', '', now(), now()
            FROM generate_series(1, %s) AS i
            """,
            [contacts],
        )
        cursor.execute("SELECT min(id) FROM sessions_app_contact")
        first_contact = cursor.fetchone()[0]
        cursor.execute(
            f"""
            INSERT INTO sessions_app_session (id, channel_id, channel_kind, contact_id, business_id,
                location_id, agent_id, title, description, thumbnail_url, status, metadata, mission_id,
                message_count, first_message_at, last_message_at, last_activity_at, status_changed_at,
                created_at, updated_at)
            SELECT gen_random_uuid(), %s, 'sms', %s + (i %% %s), '', '', '', 'SMS', '', '', 'active',
                %s, '', 1, t, t, t, t, t, t
            FROM ({GENERATED_TIMES}) AS rows
            """,
            [channel.pk, first_contact, contacts, empty_metadata_token(), sessions],
        )
        if last_write_order:
            # As ingest leaves a table: each message rewrites its session's row at the end, so rows
            # lie in the order of their last activity (docs/sweep.md, "Stop 15").
            cursor.execute("CLUSTER sessions_app_session USING session_recent")
        cursor.execute("VACUUM ANALYZE sessions_app_session")
        cursor.execute("VACUUM ANALYZE sessions_app_contact")
    return channel.pk


# The yardstick: the least a session table can be for this sweep, so that the sweep's rate can be
# quoted against what this server does with the same statement in the same run (as bench/ingest.py
# quotes ingest against ../shared/bench/reference). It has only the columns the batch statement reads
# and writes, its one claim index (`session_status_recent`'s columns), the session table's fillfactor,
# and a StatusChange table with its one index and, like the real one since migration 0015, its
# foreign key to the session (deferred, as Django declares it): every index more, every wider row, is
# what the real table adds on top.
YARDSTICK_SESSIONS = "bench_yardstick_session"
YARDSTICK_CHANGES = "bench_yardstick_statuschange"


def session_updates() -> tuple[int, int]:
    """(updates, heap-only updates) of the session table so far, by every backend."""
    from django.db import connection

    time.sleep(1.5)  # backends report their counts to the shared statistics at most once a second
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_stat_clear_snapshot()")
        cursor.execute(
            "SELECT n_tup_upd, n_tup_hot_upd FROM pg_stat_user_tables WHERE relname = 'sessions_app_session'"
        )
        updates, heap_only = cursor.fetchone()
    return int(updates), int(heap_only)


def session_fillfactor() -> int:
    """The session table's fillfactor, which the yardstick shares (the default, 100, since migration
    0015 reset the 60 of 0014: a status change writes index entries anyway, so room for heap-only
    updates buys nothing)."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT reloptions FROM pg_class WHERE relname = 'sessions_app_session'")
        options = cursor.fetchone()[0] or []
    return next((int(o.split("=")[1]) for o in options if o.startswith("fillfactor=")), 100)


def build_yardstick(sessions: int) -> None:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(f"DROP TABLE IF EXISTS {YARDSTICK_CHANGES}, {YARDSTICK_SESSIONS}")
        cursor.execute(
            f"""
            CREATE TABLE {YARDSTICK_SESSIONS} (id uuid PRIMARY KEY, channel_id integer NOT NULL,
                status varchar(16) NOT NULL, last_activity_at timestamptz NOT NULL,
                status_changed_at timestamptz NOT NULL, updated_at timestamptz NOT NULL)
                WITH (fillfactor = {session_fillfactor()})
            """
        )
        cursor.execute(
            f"""
            CREATE TABLE {YARDSTICK_CHANGES} (id bigserial PRIMARY KEY,
                session_id uuid NOT NULL REFERENCES {YARDSTICK_SESSIONS} (id) DEFERRABLE INITIALLY DEFERRED,
                from_status varchar(16) NOT NULL, to_status varchar(16) NOT NULL,
                actor varchar(150) NOT NULL, reason varchar(255) NOT NULL, created_at timestamptz NOT NULL)
            """
        )
        # The same rows as generate().
        cursor.execute(
            f"""
            INSERT INTO {YARDSTICK_SESSIONS}
            SELECT gen_random_uuid(), 1, 'active', t, t, t
            FROM ({GENERATED_TIMES}) AS rows
            """,
            [sessions],
        )
        cursor.execute(f"CREATE INDEX ON {YARDSTICK_SESSIONS} (status, last_activity_at DESC, id DESC)")
        cursor.execute(f"CREATE INDEX ON {YARDSTICK_CHANGES} (session_id, created_at)")
        cursor.execute(f"VACUUM ANALYZE {YARDSTICK_SESSIONS}")


def sweep_yardstick(url: str, batch: int, parallel: int, before) -> tuple[int, float, float]:  # type: ignore[no-untyped-def]
    """Drain the yardstick's due rows with the sweep's own statement, fixed full batches, on `parallel`
    connections; returns (moved, seconds, PostgreSQL CPU seconds)."""
    from concurrent.futures import ThreadPoolExecutor

    import psycopg
    from django.utils import timezone

    from sessions_app.lifecycle.transitions import BEGINNING, batch_sql

    sql = batch_sql(session_table=YARDSTICK_SESSIONS, change_table=YARDSTICK_CHANGES)
    params = {
        "source": "active",
        "to": "abandoned",
        "before": before,
        "now": timezone.now(),
        "actor": "system:sweep",
        "reason": "yardstick",
        "limit": batch,
    }

    def drain() -> tuple[int, float]:
        moved = 0
        with psycopg.connect(url, autocommit=True) as conn:
            pid = conn.info.backend_pid
            cpu = process_cpu_seconds(pid)
            since = BEGINNING
            while True:
                with conn.transaction():
                    conn.execute("SET LOCAL synchronous_commit = off")
                    count, reached = conn.execute(sql, {**params, "since": since}).fetchone()  # type: ignore[misc]
                moved += count
                since = reached or since  # keyset, as the sweep's drain
                if count < batch:
                    return moved, process_cpu_seconds(pid) - cpu

    start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=parallel) as pool:
        parts = [future.result() for future in [pool.submit(drain) for _ in range(parallel)]]
    elapsed = time.perf_counter() - start
    return sum(p[0] for p in parts), elapsed, sum(p[1] for p in parts)


def ingest_worker(url: str, data_dir: str, index: int, contacts: int, stop, results) -> None:
    os.environ["DATABASE_URL"] = url
    django_setup(data_dir)
    from sessions_app.ingest.rule import InboundMessage, record_phone_message

    sent = errors = 0
    started = time.perf_counter()
    while not stop.is_set():
        number = (index * 7919 + sent * 13) % contacts + 1
        try:
            record_phone_message(
                kind="sms",
                to="+15005550006",
                from_phone=f"+1555{number:07d}",
                inbound=InboundMessage(
                    content="bench", provider="bench", external_id=f"bench-{index}-{sent}"
                ),
            )
            sent += 1
        except Exception as exc:
            errors += 1
            print(f"ingest error: {type(exc).__name__}: {exc}", file=sys.stderr)
    results.put((index, sent, errors, time.perf_counter() - started))


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sessions", type=int, default=1_000_000)
    parser.add_argument("--contacts", type=int, default=100_000)
    parser.add_argument("--batch", type=int, help="SESSION_SWEEP_BATCH_SIZE (default: the setting's)")
    parser.add_argument("--parallel", type=int, help="SESSION_SWEEP_PARALLEL (default: the setting's)")
    parser.add_argument("--ingest-processes", type=int, default=2)
    parser.add_argument(
        "--template",
        action="store_true",
        help="keep the generated sessions in <database>_template and start later runs from a copy of "
        "it (migrated to the current schema first; the migration's time is printed)",
    )
    parser.add_argument(
        "--last-write-order",
        action="store_true",
        help="lay the sessions out in the order of their last activity, as ingest leaves a table, "
        "instead of due and not due interleaved (with --template, give each layout a database name "
        "of its own: the template is kept per name)",
    )
    args = parser.parse_args()
    url = os.environ.get("DATABASE_URL", "")
    if not url.startswith("postgres"):
        sys.exit("set DATABASE_URL=postgres://…/bench_sweep (a database of its own; it is recreated)")
    data_dir = tempfile.mkdtemp(prefix="bench-sweep-")
    copied = recreate_database(url, template=args.template)
    django_setup(data_dir)
    from django.conf import settings
    from django.core.management import call_command
    from django.db import DEFAULT_DB_ALIAS, connection, connections
    from django.db.backends.signals import connection_created
    from django.utils import timezone

    from sessions_app.lifecycle.sweep import sweep_sessions
    from sessions_app.models import Message, Session, StatusChange

    if copied:
        t0 = time.perf_counter()
        call_command("migrate", verbosity=0)
        print(f"copied the template; migrating it took {time.perf_counter() - t0:.1f}s")
    else:
        call_command("migrate", verbosity=0)
        t0, generated_at = time.perf_counter(), time.time()
        generate(args.sessions, args.contacts, args.last_write_order)
        print(f"generated {args.sessions:,} sessions in {time.perf_counter() - t0:.1f}s")
        if args.template:
            connection.close()
            save_template(url, generated_at)

    durations: list[float] = []  # each statement's execution
    batches: list[float] = []  # the same, of the statements that move a batch
    held: list[float] = []  # each transaction's, first statement to end of commit: how long locks last
    opened: dict[int, float] = {}  # connection -> when its open transaction's first statement began
    backend_cpu: dict[int, list[float]] = {}  # sweep backend pid -> [CPU at first sight, CPU now]

    def timed(execute, sql, params, many, context):  # type: ignore[no-untyped-def]
        conn = context["connection"]
        start = time.perf_counter()
        if not conn.get_autocommit():
            opened.setdefault(id(conn), start)
        try:
            return execute(sql, params, many, context)
        finally:
            durations.append(time.perf_counter() - start)
            if "SKIP LOCKED" in sql:
                batches.append(durations[-1])
            pid = conn.connection.info.backend_pid
            now_cpu = process_cpu_seconds(pid)
            backend_cpu[pid][1] = now_cpu

    def instrument(conn) -> None:  # type: ignore[no-untyped-def]
        pid = conn.connection.info.backend_pid
        backend_cpu[pid] = [process_cpu_seconds(pid)] * 2
        conn.execute_wrappers.append(timed)
        commit = conn._commit

        def timed_commit() -> None:
            try:
                commit()
            finally:
                if id(conn) in opened:
                    held.append(time.perf_counter() - opened.pop(id(conn)))

        conn._commit = timed_commit

    build_yardstick(args.sessions)
    ctx = mp.get_context("spawn")
    stop, results = ctx.Event(), ctx.Queue()
    workers = [
        ctx.Process(target=ingest_worker, args=(url, data_dir, i, args.contacts, stop, results))
        for i in range(args.ingest_processes)
    ]
    for worker in workers:
        worker.start()
    bench_messages = Message.objects.filter(provider="bench")
    deadline = time.monotonic() + 120
    while bench_messages.count() < 20 * len(workers) and time.monotonic() < deadline:
        time.sleep(0.5)  # until every worker has started (spawn + Django set-up)
    baseline_start, baseline_count = time.perf_counter(), bench_messages.count()
    time.sleep(5)
    baseline = (bench_messages.count() - baseline_count) / (time.perf_counter() - baseline_start)
    before = bench_messages.count()
    # The sweep's extra threads open their own connections: time their statements too.
    connection_created.connect(lambda sender, connection, **kw: instrument(connection), weak=False)
    connection.ensure_connection()
    instrument(connections[DEFAULT_DB_ALIAS])  # the wrapper itself, as the sweep's threads get theirs
    updates_before = session_updates()
    python_cpu = time.process_time()
    start = time.perf_counter()
    result = sweep_sessions(batch_size=args.batch, parallel=args.parallel)
    elapsed = time.perf_counter() - start
    updates, heap_only = (
        after - first for after, first in zip(session_updates(), updates_before, strict=True)
    )
    python_cpu = time.process_time() - python_cpu
    connection.execute_wrappers.remove(timed)
    during = bench_messages.count() - before
    # The yardstick next, under the same ingest load, with the same cutoff, batch size and connections.
    batch = args.batch or settings.SESSION_SWEEP_BATCH_SIZE
    parallel = args.parallel or settings.SESSION_SWEEP_PARALLEL
    cutoff = timezone.now() - timedelta(seconds=settings.SESSION_ABANDON_AFTER)
    yard_moved, yard_elapsed, yard_cpu = sweep_yardstick(url, batch, parallel, cutoff)
    stop.set()
    stats = [results.get(timeout=60) for _ in workers]
    for worker in workers:
        worker.join()

    moved = result.total
    print(f"sweep: {result.abandoned:,} abandoned, {result.archived:,} archived in {elapsed:.2f}s")
    print(f"  rate: {moved / elapsed:,.0f} transitions/s (target ≥ {RATE_TARGET:,})")
    batches.sort()
    print(
        f"  statements: {len(durations)}, longest {max(durations) * 1000:.0f} ms; {len(batches)} batches, "
        f"p50 {batches[len(batches) // 2] * 1000:.0f} ms, "
        f"p99 {batches[len(batches) * 99 // 100] * 1000:.0f} ms; "
        f"batch size {args.batch or settings.SESSION_SWEEP_BATCH_SIZE} at most, "
        f"{args.parallel or settings.SESSION_SWEEP_PARALLEL} connection(s)"
    )
    print(
        f"  session rows updated meanwhile (the sweep's and ingest's): {updates:,}, of which heap-only "
        f"(no index entry written): {heap_only:,}"
    )
    if held:
        print(f"  row locks held at most {max(held) * 1000:.0f} ms (first statement to end of commit)")
    database_cpu = sum(now - first for first, now in backend_cpu.values())
    if moved:
        print(
            f"  CPU per transition: {database_cpu / moved * 1e6:.0f} µs in PostgreSQL "
            f"({len(backend_cpu)} backend(s)), {python_cpu / moved * 1e6:.0f} µs in Python"
        )
    longest = max(durations)
    if yard_moved:
        yard_rate = yard_moved / yard_elapsed
        print(
            f"yardstick (the same statement on a table with only the columns and the one index it needs; "
            f"same batch size, connections and ingest load): {yard_moved:,} in {yard_elapsed:.2f}s, "
            f"{yard_rate:,.0f} transitions/s, {yard_cpu / yard_moved * 1e6:.0f} µs of PostgreSQL CPU each"
        )
        if moved:
            print(f"  the sweep's rate against the yardstick's: {moved / elapsed / yard_rate:.2f}")
    sent = sum(s[1] for s in stats)
    errors = sum(s[2] for s in stats)
    stored = bench_messages.count()
    print(
        f"ingest ({args.ingest_processes} processes): {baseline:,.0f} messages/s before the sweep, "
        f"{during / elapsed:,.0f}/s during it; {sent:,} sent in all, {errors} errors, {sent - stored} missing"
    )
    changes = StatusChange.objects.count()
    print(
        f"check: {changes:,} StatusChange rows for {moved:,} transitions; "
        f"{Session.objects.filter(status='active').count():,} sessions still active"
    )
    verdicts = {
        f"rate ≥ {RATE_TARGET:,} transitions/s": moved / elapsed >= RATE_TARGET,
        f"longest statement < {STATEMENT_LIMIT:.0f} s": longest < STATEMENT_LIMIT,
        "no ingest error, no acknowledged message missing": errors == 0 and sent - stored <= 0,
        "one StatusChange per transition": changes == moved,
    }
    for name, held_up in verdicts.items():
        print(f"  [{'ok' if held_up else 'MISSED'}] {name}")
    return 0 if all(verdicts.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
