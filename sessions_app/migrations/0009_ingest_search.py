"""Ingest and search together (PostgreSQL only; docs/ingest.md, docs/api.md "Search at scale").

- The ingest function (0007) now appends a joined session's new words to its search document in
  the UPDATE that bumps the session, so the message trigger of 0008 finds nothing new and writes no
  second version of the row (every version costs an entry in each of the session's indexes).
- The trigram indexes of 0006 on session titles, descriptions and message text go: every search of
  sessions (API, staff pages, admin) now reads the search document, and each message paid for a
  trigram index entry. The contact ones stay for the contact list's search.
"""

import importlib

from django.db import migrations

ingest = importlib.import_module("sessions_app.migrations.0007_ingest_function")

BUMP = """            updated_at = p_now
         WHERE x.id = s.id AND x.status = 'active'"""
BUMP_WITH_WORDS = """            updated_at = p_now,
            search_document = x.search_document || session_search_words(p_message->>'content')
         WHERE x.id = s.id AND x.status = 'active'"""
assert BUMP in ingest.CREATE_FUNCTION
CREATE_FUNCTION = ingest.CREATE_FUNCTION.replace(BUMP, BUMP_WITH_WORDS)

TRIGRAM = {
    "session_title_trgm": ("sessions_app_session", "title"),
    "session_description_trgm": ("sessions_app_session", "description"),
    "message_content_trgm": ("sessions_app_message", "content"),
}


def forward(apps, schema_editor):  # type: ignore[no-untyped-def]
    if schema_editor.connection.vendor != "postgresql":
        return
    schema_editor.execute(CREATE_FUNCTION)
    for name in TRIGRAM:
        schema_editor.execute(f"DROP INDEX IF EXISTS {name}")


def backward(apps, schema_editor):  # type: ignore[no-untyped-def]
    if schema_editor.connection.vendor != "postgresql":
        return
    schema_editor.execute(ingest.CREATE_FUNCTION)
    for name, (table, column) in TRIGRAM.items():
        schema_editor.execute(
            f"CREATE INDEX IF NOT EXISTS {name} ON {table} USING gin ((UPPER(({column})::text)) gin_trgm_ops)"
        )


class Migration(migrations.Migration):
    dependencies = [("sessions_app", "0008_search")]

    operations = [migrations.RunPython(forward, backward, elidable=False)]
