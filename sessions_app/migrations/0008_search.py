"""The session search document: one `tsvector` per session, kept current by triggers.

The functions and triggers are `sessions_app/search/document.sql` (their current text, applied here
and by every later migration that changes them: sessions_app/sql.py).

`sessions_app_session.search_document` holds, without positions, the lower-cased words of the
session's title and description, of its contact's names and external user id, of the text of every
one of its messages, and the contact's phone digits with every ending of them (so a prefix search
finds any run of digits). One GIN index serves `session_search.search_sessions` (docs/api.md,
"Search at scale").

Why triggers and not Python: every write path (the ORM, the ingest path, which is moving to raw SQL,
admin edits, bulk loads) keeps the document current in its own transaction at no extra round trip.
The column is unknown to the Django model on purpose, so no ORM read ever fetches it.

- session INSERT, or UPDATE that changes title, description or contact: the document is recomputed
  (BEFORE trigger, so it is written with the row itself);
- message INSERT with text: its words are appended to its session's document, and only when it
  brings a word the document lacks (a message of known words writes nothing);
- message text UPDATE (row) or DELETE (once per statement): the sessions concerned are recomputed;
- contact UPDATE of phone, names or external user id: the contact's sessions are recomputed.
"""

from django.db import migrations

from sessions_app.sql import SEARCH, sql_text


def create(apps, schema_editor):
    run = schema_editor.execute
    run("ALTER TABLE sessions_app_session ADD COLUMN search_document tsvector NOT NULL DEFAULT ''::tsvector")
    run("SET LOCAL check_function_bodies = off")
    run(sql_text(SEARCH))  # the functions and triggers as they are now
    run("SELECT session_search_backfill()")
    run("CREATE INDEX session_search_document ON sessions_app_session USING gin (search_document)")


def drop(apps, schema_editor):
    run = schema_editor.execute
    for trigger, table in [
        ("session_search_insert", "sessions_app_session"),
        ("session_search_update", "sessions_app_session"),
        ("session_search_message_insert", "sessions_app_message"),
        ("session_search_message_update", "sessions_app_message"),
        ("session_search_message_delete", "sessions_app_message"),
        ("session_search_contact", "sessions_app_contact"),
    ]:
        run(f"DROP TRIGGER IF EXISTS {trigger} ON {table}")
    for function in [
        "session_search_on_contact()",
        "session_search_on_message_delete()",
        "session_search_on_message_update()",
        "session_search_on_message_insert()",
        "session_search_on_session()",
        "session_search_refresh(uuid[])",
        "session_search_backfill()",
        "session_search_fields(text, text, bigint, uuid)",
        "session_search_head(text, text, bigint)",
        "session_search_phone(text)",
        "session_search_words(text)",
    ]:
        run(f"DROP FUNCTION IF EXISTS {function}")
    run("DROP INDEX IF EXISTS session_search_document")
    run("ALTER TABLE sessions_app_session DROP COLUMN IF EXISTS search_document")


class Migration(migrations.Migration):
    dependencies = [("sessions_app", "0007_ingest_function")]

    operations = [migrations.RunPython(create, drop)]
