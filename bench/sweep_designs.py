r"""What other table designs would let the lifecycle sweep do, measured with no ingest running.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/bench_sweep \
        .venv/bin/python bench/sweep.py --template            # once: leaves bench_sweep_template
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/bench_sweep_designs \
        .venv/bin/python bench/sweep_designs.py [--rounds 3] [DESIGN …]

Every design drains 500,000 due sessions of 1,000,000 (the rows bench/sweep.py generates) on two
connections in full batches of 5,000 from a keyset position, `synchronous_commit = off`, and
reports the rate, the longest statement, the PostgreSQL CPU and the WAL per transition.

The real designs start from a copy (`CREATE DATABASE … TEMPLATE`) of `--source`, the database
`bench/sweep.py --template` generated and migrated: the product's own session and StatusChange
tables, all their indexes, triggers and constraints, and they run the product's own batch statement
(`lifecycle.transitions.batch_sql`). Each design changes one thing on its copy first:

- `current`: nothing (migration 0015: the status index, the StatusChange foreign key, deferred as
  Django declares it, the search document in the session row);
- `side-document`: the search document in a table of its own (one row per session, its GIN index
  there) instead of a column of the session row, so a status change no longer copies the document
  nor re-inserts its words into a GIN index (the column dropped, so rows written from then on are
  narrower; the table is not rewritten, as a migration would not rewrite it);
- `no-channel-index`: the plain `(channel_id)` index Django adds for the foreign key dropped;
- `fk-immediate`: the foreign key checked at the end of each statement (`SET CONSTRAINTS ALL
  IMMEDIATE` in each batch's transaction) instead of at commit;
- `no-fk`: the StatusChange foreign key dropped (as migration 0014 had it);
- `side-document+no-channel-index+no-fk`: the three changes together;
- `list-indexes`: the three indexes bench/status_lists.py found the lists need added (kind and
  status, status and creation, sessions without a message), and
  `side-document+no-channel-index+list-indexes` with the two changes above.

Bare tables, for scale (no product table involved): `yardstick` (the columns the statement needs,
the status index, StatusChange rows with their foreign key and index: what bench/sweep.py's
yardstick is) and `no-record` (the same without the StatusChange rows).

The database named in DATABASE_URL is dropped and created again for every design: give it one of
its own (its name must start with "bench").
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from urllib.parse import urlsplit

import psycopg
from benchenv import process_cpu_seconds
from sweep import GENERATED_TIMES, django_setup

SESSIONS = 1_000_000
BATCH = 5000
CONNECTIONS = 2
SESSION = "sessions_app_session"
CHANGE = "sessions_app_statuschange"
CHANGE_FK = (
    "SELECT conname FROM pg_constraint"
    " WHERE conrelid = 'sessions_app_statuschange'::regclass AND contype = 'f'"
)

SIDE_DOCUMENT = [
    "CREATE TABLE session_search_side (session_id uuid PRIMARY KEY"
    f" REFERENCES {SESSION} (id) ON DELETE CASCADE DEFERRABLE INITIALLY DEFERRED,"
    " document tsvector NOT NULL)",
    f"INSERT INTO session_search_side SELECT id, search_document FROM {SESSION}",
    "CREATE INDEX session_side_document ON session_search_side USING gin (document)",
    f"DROP TRIGGER IF EXISTS session_search_insert ON {SESSION}",
    f"DROP TRIGGER IF EXISTS session_search_update ON {SESSION}",
    f"ALTER TABLE {SESSION} DROP COLUMN search_document",
    "VACUUM ANALYZE session_search_side",
]
NO_CHANNEL_INDEX = [
    "DO $$ DECLARE name text; BEGIN"
    " SELECT i.relname INTO name FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid"
    f" JOIN pg_attribute a ON a.attrelid = x.indrelid AND a.attnum = x.indkey[0]"
    f" WHERE x.indrelid = '{SESSION}'::regclass AND x.indnatts = 1 AND a.attname = 'channel_id'"
    " AND x.indpred IS NULL;"
    " IF name IS NULL THEN RAISE EXCEPTION 'no plain (channel_id) index'; END IF;"
    " EXECUTE format('DROP INDEX %I', name); END $$"
]
NO_FK = [
    "DO $$ DECLARE name text; BEGIN"
    f" FOR name IN {CHANGE_FK} LOOP EXECUTE format('ALTER TABLE {CHANGE} DROP CONSTRAINT %I', name);"
    " END LOOP; END $$"
]
# The indexes bench/status_lists.py found the lists need (docs/sweep.md, "Stop 18"): what they cost.
LIST_INDEXES = [
    f"CREATE INDEX session_kind_status_recent ON {SESSION}"
    " (channel_kind, status, last_activity_at DESC, id DESC)",
    f"CREATE INDEX session_status_created ON {SESSION} (status, created_at DESC, id DESC)",
    f"CREATE INDEX session_no_message_recent ON {SESSION} (last_activity_at DESC, id DESC)"
    " WHERE last_message_at IS NULL",
]
# name: (changes to the copy, a statement at the start of each batch's transaction)
REAL: dict[str, tuple[list[str], str]] = {
    "current": ([], ""),
    "side-document": (SIDE_DOCUMENT, ""),
    "no-channel-index": (NO_CHANNEL_INDEX, ""),
    "fk-immediate": ([], "SET CONSTRAINTS ALL IMMEDIATE"),
    "no-fk": (NO_FK, ""),
    "side-document+no-channel-index+no-fk": (SIDE_DOCUMENT + NO_CHANNEL_INDEX + NO_FK, ""),
    "list-indexes": (LIST_INDEXES, ""),
    "side-document+no-channel-index+list-indexes": (SIDE_DOCUMENT + NO_CHANNEL_INDEX + LIST_INDEXES, ""),
}
BARE = ("yardstick", "no-record")
DESIGNS = (*REAL, *BARE)
DEFAULT = (*REAL, "yardstick")

BARE_TABLES = [
    "CREATE TABLE s (id uuid PRIMARY KEY, channel_id integer NOT NULL DEFAULT 1,"
    " status varchar(16) NOT NULL, last_activity_at timestamptz NOT NULL,"
    " status_changed_at timestamptz NOT NULL, updated_at timestamptz NOT NULL)",
    "CREATE TABLE c (id bigserial PRIMARY KEY,"
    " session_id uuid NOT NULL REFERENCES s (id) DEFERRABLE INITIALLY DEFERRED,"
    " from_status varchar(16) NOT NULL, to_status varchar(16) NOT NULL,"
    " actor varchar(150) NOT NULL, reason varchar(255) NOT NULL, created_at timestamptz NOT NULL)",
    # The same rows as bench/sweep.py's (its one parameter: how many).
    f"INSERT INTO s (id, status, last_activity_at, status_changed_at, updated_at)"
    f" SELECT gen_random_uuid(), 'active', t, t, t FROM ({GENERATED_TIMES}) AS rows",
    "CREATE INDEX ON s (status, last_activity_at DESC, id DESC)",
    "CREATE INDEX ON c (session_id, created_at)",
    "VACUUM ANALYZE s",
]
# The product's statement without its record: claim, move by ctid, count.
NO_RECORD = """
WITH picked AS (
    SELECT ctid, id, last_activity_at FROM s
    WHERE status >= %(source)s AND status <= %(source)s
      AND last_activity_at >= %(since)s AND last_activity_at < %(before)s
    ORDER BY status DESC, last_activity_at, id LIMIT %(limit)s FOR UPDATE SKIP LOCKED
), moved AS (
    UPDATE s SET status = %(to)s, status_changed_at = %(now)s, updated_at = %(now)s
    WHERE ctid = ANY(ARRAY(SELECT ctid FROM picked)) RETURNING id
)
SELECT (SELECT count(*) FROM moved), (SELECT max(last_activity_at) FROM picked)
"""


def admin_url(url: str) -> str:
    return url.replace(urlsplit(url).path, "/postgres")


def recreate(url: str, source: str | None) -> None:
    name = urlsplit(url).path.lstrip("/")
    with psycopg.connect(admin_url(url), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}"')  # type: ignore[arg-type]
        template = f' TEMPLATE "{source}" STRATEGY FILE_COPY' if source else ""
        conn.execute(f'CREATE DATABASE "{name}"{template}')  # type: ignore[arg-type]


def prepare(url: str, design: str, source: str) -> None:
    if design in BARE:
        recreate(url, None)
        with psycopg.connect(url, autocommit=True) as conn:
            for sql in BARE_TABLES:
                conn.execute(sql, [SESSIONS] if "%s" in sql else None)  # type: ignore[arg-type]
            conn.execute("CHECKPOINT")
        return
    recreate(url, source)
    with psycopg.connect(url, autocommit=True) as conn:
        applied = conn.execute(
            "SELECT 1 FROM django_migrations WHERE app = 'sessions_app' AND name = '0015_one_engine'"
        ).fetchone()
        if not applied:
            sys.exit(f"{source} is not migrated to 0015_one_engine: run bench/sweep.py --template first")
        for sql in REAL[design][0]:
            conn.execute(sql)  # type: ignore[arg-type]
        conn.execute(f"VACUUM ANALYZE {SESSION}")
        conn.execute("CHECKPOINT")


def statement(design: str) -> str:
    from sessions_app.lifecycle.transitions import batch_sql

    if design == "no-record":
        return NO_RECORD
    if design == "yardstick":
        return batch_sql(session_table="s", change_table="c")
    return batch_sql()


def cutoff(url: str, design: str) -> datetime:
    """Between the due rows (two hours quiet when generated) and the others (a minute): any copy's age."""
    table = "s" if design in BARE else SESSION
    with psycopg.connect(url) as conn:
        row = conn.execute(f"SELECT max(last_activity_at) - interval '1 hour' FROM {table}").fetchone()  # type: ignore[arg-type]
    assert row is not None
    return row[0]


def drain(url: str, sql: str, prelude: str, params: dict[str, object], out: dict[str, list[float]]) -> None:
    since = datetime(1, 1, 1, tzinfo=UTC)
    with psycopg.connect(url, autocommit=True) as conn:
        pid = conn.info.backend_pid
        cpu = process_cpu_seconds(pid)
        while True:
            start = time.perf_counter()
            with conn.transaction():
                conn.execute("SET LOCAL synchronous_commit = off")
                if prelude:
                    conn.execute(prelude)  # type: ignore[arg-type]
                count, reached = conn.execute(sql, {**params, "since": since}).fetchone()  # type: ignore[arg-type, misc]
            out["statements"].append(time.perf_counter() - start)  # the batch with its commit
            out["moved"].append(count)
            since = reached or since  # keyset, as the sweep's drain
            if count < BATCH:
                out["cpu"].append(process_cpu_seconds(pid) - cpu)
                return


def measure(url: str, design: str) -> dict[str, float]:
    from django.utils import timezone

    params = {
        "source": "active",
        "to": "abandoned",
        "before": cutoff(url, design),
        "now": timezone.now(),
        "actor": "system:sweep",
        "reason": "no activity for 1800s",
        "limit": BATCH,
    }
    sql = statement(design)
    prelude = REAL[design][1] if design in REAL else ""
    with psycopg.connect(url, autocommit=True) as conn:
        wal_before = conn.execute("SELECT pg_current_wal_lsn()").fetchone()[0]  # type: ignore[index]
    out: dict[str, list[float]] = {"statements": [], "moved": [], "cpu": []}
    threads = [
        threading.Thread(target=drain, args=(url, sql, prelude, params, out)) for _ in range(CONNECTIONS)
    ]
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - start
    with psycopg.connect(url, autocommit=True) as conn:
        wal = conn.execute("SELECT pg_current_wal_lsn() - %s::pg_lsn", [wal_before]).fetchone()[0]  # type: ignore[index]
    moved = sum(out["moved"])
    if moved != SESSIONS // 2:
        sys.exit(f"{design}: moved {moved:,}, expected {SESSIONS // 2:,}")
    return {
        "rate": moved / elapsed,
        "longest": max(out["statements"]) * 1000,
        "cpu": sum(out["cpu"]) / moved * 1e6,
        "wal": float(wal) / moved,
    }


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "designs",
        nargs="*",
        metavar="DESIGN",
        help=f"any of {', '.join(DESIGNS)} (default: all but no-record)",
    )
    parser.add_argument("--rounds", type=int, default=3, help="each design this many times, interleaved")
    parser.add_argument("--source", default="bench_sweep_template", help="the generated, migrated database")
    args = parser.parse_args()
    if unknown := set(args.designs) - set(DESIGNS):
        parser.error(f"unknown design(s): {', '.join(sorted(unknown))}")
    url = os.environ.get("DATABASE_URL", "")
    name = urlsplit(url).path.lstrip("/")
    if not url.startswith("postgres") or not name.startswith("bench"):
        sys.exit("set DATABASE_URL=postgres://…/bench_sweep_designs (a database of its own; it is recreated)")
    django_setup(tempfile.mkdtemp(prefix="bench-designs-"))  # for the product's statement only
    results: dict[str, list[dict[str, float]]] = {design: [] for design in args.designs or DEFAULT}
    for round_number in range(1, args.rounds + 1):
        for design in results:
            prepare(url, design, args.source)
            figures = measure(url, design)
            results[design].append(figures)
            print(
                f"round {round_number} {design:38} {figures['rate']:>9,.0f}/s, longest statement "
                f"{figures['longest']:5.0f} ms, {figures['cpu']:5.1f} µs PostgreSQL CPU and "
                f"{figures['wal']:,.0f} B of WAL per transition",
                flush=True,
            )
    print(f"\n{'design':38} {'rate/s, median (min-max)':>28} {'longest ms':>11} {'CPU µs':>7} {'WAL B':>6}")
    for design, runs in results.items():
        rates = [r["rate"] for r in runs]
        print(
            f"{design:38} {statistics.median(rates):>10,.0f} ({min(rates):,.0f}-{max(rates):,.0f})"
            f" {max(r['longest'] for r in runs):>11.0f} {statistics.median(r['cpu'] for r in runs):>7.1f}"
            f" {statistics.median(r['wal'] for r in runs):>6.0f}"
        )
    with psycopg.connect(admin_url(url), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}"')  # type: ignore[arg-type]
    return 0


if __name__ == "__main__":
    sys.exit(main())
