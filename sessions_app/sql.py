"""SQL that lives in files of its own, applied by migrations: the reuse rule, the search document and
the window report rollup's trigger.

Each file is the whole current text of what it defines (`CREATE OR REPLACE`, so applying it again is
harmless). A change edits the file and adds a migration that applies it again with `apply_sql_file`;
migrations that ran before keep nothing of their own text, so there is never a second copy to read.
Function bodies are checked when they run, not when they are created (`check_function_bodies` off,
as pg_dump restores them), so an early migration can apply the file's latest text even where it
names a column a later migration adds.
"""

from __future__ import annotations

from pathlib import Path

from django.db import migrations

APP_DIR = Path(__file__).resolve().parent
# The files, by what they define.
INGEST = "ingest/record_inbound.sql"
SEARCH = "search/document.sql"
WINDOW_ROLLUP = "ingest/window_rollup.sql"


def sql_text(name: str) -> str:
    return (APP_DIR / name).read_text()


def apply_sql_file(name: str) -> migrations.RunSQL:
    """A migration operation that applies the SQL file `name` (relative to sessions_app/)."""
    # A list: each item is sent as it is, not split into statements (the functions' bodies hold ";").
    return migrations.RunSQL(
        ["SET LOCAL check_function_bodies = off", sql_text(name)], reverse_sql=migrations.RunSQL.noop
    )
