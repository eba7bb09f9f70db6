"""One engine, one text per rule (docs/database.md, docs/sweep.md "Stop 18").

- The status index comes back: lists of one status (abandoned included) are one index range again,
  and the reuse rule's partial index names the status. The status group of 0014 goes, and with it
  the sweep's marks (`SweepMark`): the claim walks the status index to exactly the due sessions.
- `RelayEvent` goes: without Redis, sockets share channels-postgres's layer (docs/realtime.md).
- `StatusChange.session` gets its foreign key constraint back (rows whose session is gone, which
  nothing should have left behind, are deleted first).
- The session table's fillfactor returns to the default: a status change touches an index now, so
  the room 0014 left on each page for heap-only updates buys nothing.
- The reuse rule's functions and the search document's functions and triggers are applied from
  their files (sessions_app/ingest/record_inbound.sql, sessions_app/search/document.sql). The rule
  now takes plain values instead of JSON rows: the old signature is dropped first.

On a large table the index builds and the constraint's validation hold the table's lock for a while
(README, "Upgrading"): run it in a quiet moment.
"""

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models

from sessions_app.sql import INGEST, SEARCH, apply_sql_file

OLD_INGEST_SIGNATURE = (
    "sessions_app_record_inbound(bigint, interval, timestamptz, bigint, jsonb, text, text, text, text, "
    "uuid, jsonb, jsonb)"
)


class Migration(migrations.Migration):
    dependencies = [
        ("sessions_app", "0014_status_group"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.RunSQL(f"DROP FUNCTION IF EXISTS {OLD_INGEST_SIGNATURE}", migrations.RunSQL.noop),
        migrations.DeleteModel(name="SweepMark"),
        # The embedded default's socket relay table: channels-postgres has tables of its own.
        migrations.DeleteModel(name="RelayEvent"),
        migrations.RemoveIndex(model_name="session", name="session_open_reuse_lookup"),
        migrations.RemoveIndex(model_name="session", name="session_group_recent"),
        migrations.RemoveField(model_name="session", name="status_group"),
        migrations.RunSQL("ALTER TABLE sessions_app_session RESET (fillfactor)", migrations.RunSQL.noop),
        migrations.RunSQL(
            "DELETE FROM sessions_app_statuschange c "
            "WHERE NOT EXISTS (SELECT 1 FROM sessions_app_session s WHERE s.id = c.session_id)",
            migrations.RunSQL.noop,
        ),
        migrations.AlterField(
            model_name="statuschange",
            name="session",
            field=models.ForeignKey(
                db_index=False,
                on_delete=django.db.models.deletion.CASCADE,
                related_name="status_changes",
                to="sessions_app.session",
            ),
        ),
        migrations.AddIndex(
            model_name="session",
            index=models.Index(
                condition=models.Q(("status", "active")),
                fields=["channel", "contact", "-last_message_at"],
                name="session_reuse_lookup",
            ),
        ),
        migrations.AddIndex(
            model_name="session",
            index=models.Index(fields=["status", "-last_activity_at", "-id"], name="session_status_recent"),
        ),
        apply_sql_file(INGEST),
        apply_sql_file(SEARCH),
    ]
