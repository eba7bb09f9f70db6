"""The reuse rule's function takes its message's event numbers itself and returns what the events'
payloads need (docs/event-webhooks.md, "Ingest's events in the rule's own row"): three new last
parameters (which of the message's event types have a subscriber) and more columns returned, so the
old function is dropped before the file is applied again (sessions_app/ingest/record_inbound.sql;
CREATE OR REPLACE cannot change a function's result type)."""

from django.db import migrations

from sessions_app.sql import INGEST, apply_sql_file

OLD_INGEST_SIGNATURE = (
    "sessions_app_record_inbound(bigint, interval, timestamptz, bigint, text, text, text, text, text, "
    "uuid, uuid, text, text, text, text, text, integer, text, text, text, jsonb, jsonb, text, interval)"
)


class Migration(migrations.Migration):
    dependencies = [
        ("sessions_app", "0024_rollup_today"),
    ]

    operations = [
        migrations.RunSQL(f"DROP FUNCTION IF EXISTS {OLD_INGEST_SIGNATURE}", migrations.RunSQL.noop),
        apply_sql_file(INGEST),
    ]
