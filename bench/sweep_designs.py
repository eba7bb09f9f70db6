r"""What other table designs would let the lifecycle sweep do: the figures behind docs/sweep.md's
"Stop 16" section, measured on bare tables, with no ingest running.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/bench_sweep_designs \
        .venv/bin/python bench/sweep_designs.py

Each design gets a table of 1,000,000 sessions, half due, laid out as bench/sweep.py lays them out,
and a drain on two connections of 5,000-row batches in the shape of `lifecycle.batch_sql` (claim
with SKIP LOCKED, update by id, record), with `synchronous_commit = off` as the sweep sets it:

- `yardstick`: the columns the statement needs, the (status, last activity) claim index, and a
  StatusChange table with its foreign key and its (session, time) index (what bench/sweep.py runs);
- `no-record`: the same without the StatusChange rows;
- `real-width`: the yardstick plus the session table's other columns and indexes as a Twilio
  session fills them (contact, kind, creation, message count, the search document and its GIN);
- `hot`: no index mentions the status, so the change is a heap-only (HOT) update that writes no
  index entry; the claim walks the last-activity index from a moving lower bound (keyset), since
  there is no status index to walk; fillfactor 70 so the new version fits on its page;
- `hot-record`: `hot` plus the StatusChange rows (foreign key and index, as the yardstick);
- `hot-history`: `hot` with each change appended to a jsonb list on the session row instead;
- `real-group`: `real-width` with the index on a status group (a stored generated column, "open"
  for active and abandoned) instead of the status, as migration 0014 has it: heap-only changes
  with the real width and indexes, the claim walking the group from a moving lower bound (keyset);
  fillfactor 70, StatusChange rows with their foreign key (docs/sweep.md, "Stop 17");
- `real-group-nofk`: the same without the foreign key on the StatusChange rows.

The database named in DATABASE_URL is dropped and created again: give it one of its own.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from urllib.parse import urlsplit

import psycopg
from sweep import GENERATED_TIMES

SESSIONS = 1_000_000
BATCH = 5000
DESIGNS = (
    "yardstick",
    "no-record",
    "real-width",
    "hot",
    "hot-record",
    "hot-history",
    "real-group",
    "real-group-nofk",
)
RECORDED = ("yardstick", "real-width", "hot-record", "real-group", "real-group-nofk")
GROUP = (
    "ALTER TABLE s ADD COLUMN status_group varchar(16) GENERATED ALWAYS AS"
    " (CASE WHEN status IN ('active', 'abandoned') THEN 'open' ELSE status END) STORED"
)

ROWS = f"""
INSERT INTO s (id, status, last_activity_at, status_changed_at, updated_at)
SELECT gen_random_uuid(), 'active', t, t, t FROM ({GENERATED_TIMES}) AS rows
"""
REAL_WIDTH = [
    "ALTER TABLE s ADD COLUMN contact_id integer, ADD COLUMN channel_id integer DEFAULT 1,"
    " ADD COLUMN kind varchar(16) DEFAULT 'sms', ADD COLUMN created_at timestamptz DEFAULT now(),"
    " ADD COLUMN message_count integer DEFAULT 1, ADD COLUMN title varchar(255) DEFAULT 'SMS',"
    " ADD COLUMN document tsvector",
    "UPDATE s SET contact_id = (random() * 100000)::int,"
    " document = to_tsvector('simple', 'sms 15551234567 5551234567 1234567 234567 34567 4567 567')",
    "VACUUM FULL s",
    "CREATE INDEX ON s (last_activity_at DESC, id DESC)",
    "CREATE INDEX ON s (kind, last_activity_at DESC, id DESC)",
    "CREATE INDEX ON s (contact_id, last_activity_at DESC)",
    "CREATE INDEX ON s (channel_id)",
    "CREATE INDEX ON s (created_at DESC, id DESC)",
    "CREATE INDEX ON s (message_count DESC)",
    "CREATE INDEX ON s USING gin (document)",
]

CLAIM_BY_STATUS = """
picked AS (SELECT id, last_activity_at FROM s
    WHERE status >= 'active' AND status <= 'active' AND last_activity_at < now() - interval '30 minutes'
    ORDER BY status DESC, last_activity_at, id LIMIT %(limit)s FOR UPDATE SKIP LOCKED)"""
CLAIM_BY_GROUP = """
picked AS (SELECT id, last_activity_at FROM s
    WHERE status_group >= 'open' AND status_group <= 'open' AND last_activity_at >= %(after)s
        AND last_activity_at < now() - interval '30 minutes' AND status = 'active'
    ORDER BY status_group DESC, last_activity_at, id LIMIT %(limit)s FOR UPDATE SKIP LOCKED)"""
CLAIM_BY_TIME = """
picked AS (SELECT id, last_activity_at FROM s
    WHERE last_activity_at >= %(after)s AND last_activity_at < now() - interval '30 minutes'
        AND status = 'active'
    ORDER BY last_activity_at, id LIMIT %(limit)s FOR UPDATE SKIP LOCKED)"""
MOVE = """
moved AS (UPDATE s SET status = 'abandoned', status_changed_at = now(), updated_at = now() {history}
    WHERE id = ANY(ARRAY(SELECT id FROM picked)) RETURNING id)"""
HISTORY = """, history = history || jsonb_build_array(jsonb_build_object('from', 'active',
    'to', 'abandoned', 'actor', 'system:sweep', 'reason', 'no activity for 1800s', 'at', now()))"""
RECORD = """
, recorded AS (INSERT INTO c (session_id, from_status, to_status, actor, reason, created_at)
    SELECT id, 'active', 'abandoned', 'system:sweep', 'no activity for 1800s', now() FROM moved RETURNING 1)
SELECT (SELECT count(*) FROM recorded), (SELECT max(last_activity_at) FROM picked)"""
NO_RECORD = """
SELECT (SELECT count(*) FROM moved), (SELECT max(last_activity_at) FROM picked)"""


def statement(design: str) -> str:
    hot = design.startswith("hot")
    claim = CLAIM_BY_GROUP if "group" in design else CLAIM_BY_TIME if hot else CLAIM_BY_STATUS
    move = MOVE.format(history=HISTORY if design == "hot-history" else "")
    tail = RECORD if design in RECORDED else NO_RECORD
    return f"WITH {claim}, {move} {tail}"


def build(url: str, design: str) -> None:
    hot = design.startswith("hot") or "group" in design
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS c, s")
        conn.execute(
            "CREATE TABLE s (id uuid PRIMARY KEY, status varchar(16) NOT NULL,"
            " last_activity_at timestamptz NOT NULL, status_changed_at timestamptz NOT NULL,"
            " updated_at timestamptz NOT NULL, history jsonb NOT NULL DEFAULT '[]')"
            + (" WITH (fillfactor = 70)" if hot else "")
        )
        conn.execute(
            "CREATE TABLE c (id bigserial PRIMARY KEY,"
            + (
                " session_id uuid NOT NULL,"
                if design.endswith("nofk")
                else " session_id uuid NOT NULL REFERENCES s (id) DEFERRABLE INITIALLY DEFERRED,"
            )
            + " from_status varchar(16) NOT NULL, to_status varchar(16) NOT NULL,"
            " actor varchar(150) NOT NULL, reason varchar(255) NOT NULL, created_at timestamptz NOT NULL)"
        )
        conn.execute(ROWS, [SESSIONS])  # type: ignore[arg-type]
        if "group" in design:
            conn.execute(GROUP)  # type: ignore[arg-type]
        if design.startswith("real"):
            for sql in REAL_WIDTH:
                conn.execute(sql)  # type: ignore[arg-type]
        if "group" in design:
            conn.execute("CREATE INDEX ON s (status_group, last_activity_at DESC, id DESC)")
        else:
            conn.execute(
                "CREATE INDEX ON s (last_activity_at DESC, id DESC)"
                if hot
                else "CREATE INDEX ON s (status, last_activity_at DESC, id DESC)"
            )
        conn.execute("CREATE INDEX ON c (session_id, created_at)")
        conn.execute("VACUUM ANALYZE s")
        conn.execute("CHECKPOINT")


def drain(url: str, sql: str, totals: list[int]) -> None:
    after = "-infinity"
    with psycopg.connect(url, autocommit=True) as conn:
        while True:
            with conn.transaction():
                conn.execute("SET LOCAL synchronous_commit = off")
                count, last = conn.execute(sql, {"after": after, "limit": BATCH}).fetchone()  # type: ignore[misc]
            totals.append(count)
            # Keyset: the next claim starts where this one ended (used by the hot designs only).
            after = last or after
            if count < BATCH:
                return


def main() -> None:
    url = os.environ.get("DATABASE_URL", "")
    name = urlsplit(url).path.lstrip("/")
    if not url.startswith("postgres") or not name.startswith("bench"):
        sys.exit("set DATABASE_URL=postgres://…/bench_sweep_designs (a database of its own; it is recreated)")
    admin = url.replace(urlsplit(url).path, "/postgres")
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}"')  # type: ignore[arg-type]
        conn.execute(f'CREATE DATABASE "{name}"')  # type: ignore[arg-type]
    for design in sys.argv[1:] or DESIGNS:
        build(url, design)
        with psycopg.connect(url, autocommit=True) as conn:
            hot_before = conn.execute(
                "SELECT n_tup_hot_upd FROM pg_stat_user_tables WHERE relname = 's'"
            ).fetchone()
        totals: list[int] = []
        threads = [threading.Thread(target=drain, args=(url, statement(design), totals)) for _ in range(2)]
        start = time.perf_counter()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        elapsed = time.perf_counter() - start
        time.sleep(1)  # statistics reach pg_stat_user_tables with a delay
        with psycopg.connect(url, autocommit=True) as conn:
            hot_after = conn.execute(
                "SELECT n_tup_hot_upd FROM pg_stat_user_tables WHERE relname = 's'"
            ).fetchone()
        moved = sum(totals)
        hot = (hot_after[0] if hot_after else 0) - (hot_before[0] if hot_before else 0)
        print(
            f"{design:12} {moved:>9,} moved in {elapsed:5.2f}s: {moved / elapsed:>9,.0f}/s; "
            f"{hot:,} heap-only updates"
        )


if __name__ == "__main__":
    main()
