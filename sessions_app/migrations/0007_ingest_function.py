"""The reuse rule as one PostgreSQL function, so an inbound message costs one round trip.

The function's text is `sessions_app/ingest/record_inbound.sql`, applied by migration 0015 and again
by any later migration that changes it (sessions_app/sql.py); docs/ingest.md says why it exists.
Here only what else this step did: drop `message(session_id)`, since
`message_thread (session_id, created_at, id)` serves every lookup it did, and each inbound message
paid for maintaining both.
"""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("sessions_app", "0006_api")]

    operations = [
        migrations.AlterField(
            model_name="message",
            name="session",
            field=models.ForeignKey(
                db_index=False,
                on_delete=models.deletion.CASCADE,
                related_name="messages",
                to="sessions_app.session",
            ),
        ),
    ]
