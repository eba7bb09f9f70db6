"""Search reads the search document only (docs/api.md "Search at scale").

The trigram indexes of 0006 on session titles, descriptions and message text go: every search of
sessions (API, staff pages, admin) reads the search document, and each message paid for a trigram
index entry. The contact ones stay for the contact list's search.

This step also made the ingest function append a joined session's new words to its search document
in the UPDATE that bumps the session; that is now part of `sessions_app/ingest/record_inbound.sql`.
"""

from django.db import migrations

TRIGRAM = {
    "session_title_trgm": ("sessions_app_session", "title"),
    "session_description_trgm": ("sessions_app_session", "description"),
    "message_content_trgm": ("sessions_app_message", "content"),
}


def forward(apps, schema_editor):  # type: ignore[no-untyped-def]
    for name in TRIGRAM:
        schema_editor.execute(f"DROP INDEX IF EXISTS {name}")


def backward(apps, schema_editor):  # type: ignore[no-untyped-def]
    for name, (table, column) in TRIGRAM.items():
        schema_editor.execute(
            f"CREATE INDEX IF NOT EXISTS {name} ON {table} USING gin ((UPPER(({column})::text)) gin_trgm_ops)"
        )


class Migration(migrations.Migration):
    dependencies = [("sessions_app", "0008_search")]

    operations = [migrations.RunPython(forward, backward, elidable=False)]
