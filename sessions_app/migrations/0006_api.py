"""API keys, and the indexes the API's filters, orderings and search need at millions of rows.

The indexes are plain SQL (not model Meta) so this migration stays the only place that knows them;
the trigram ones serve the search's substring matches.
"""

import django.utils.timezone
from django.db import migrations, models

BTREE = [
    ("session_location_recent", "sessions_app_session", "(location_id, last_activity_at DESC)"),
    ("session_agent_recent", "sessions_app_session", "(agent_id, last_activity_at DESC)"),
    ("session_contact_recent", "sessions_app_session", "(contact_id, last_activity_at DESC)"),
    ("session_created", "sessions_app_session", "(created_at DESC, id DESC)"),
    ("session_message_count", "sessions_app_session", "(message_count DESC, id DESC)"),
    # The unique phone index is partial (phone contacts only); the contact_phone filter needs a plain one.
    ("contact_phone", "sessions_app_contact", "(phone)"),
]
# `icontains` on PostgreSQL is UPPER(col::text) LIKE UPPER('%…%'): these expressions match it.
TRIGRAM = [
    ("session_title_trgm", "sessions_app_session", "title"),
    ("session_description_trgm", "sessions_app_session", "description"),
    ("message_content_trgm", "sessions_app_message", "content"),
    ("contact_phone_trgm", "sessions_app_contact", "phone"),
    ("contact_display_name_trgm", "sessions_app_contact", "display_name"),
    ("contact_profile_name_trgm", "sessions_app_contact", "whatsapp_profile_name"),
    ("contact_external_user_trgm", "sessions_app_contact", "external_user_id"),
]


def create_indexes(apps, schema_editor):
    run = schema_editor.execute
    for name, table, columns in BTREE:
        run(f"CREATE INDEX IF NOT EXISTS {name} ON {table} {columns}")
    run("CREATE EXTENSION IF NOT EXISTS pg_trgm")
    for name, table, column in TRIGRAM:
        run(f"CREATE INDEX IF NOT EXISTS {name} ON {table} USING gin ((UPPER(({column})::text)) gin_trgm_ops)")


def drop_indexes(apps, schema_editor):
    for name, _, _ in BTREE + [(n, t, c) for n, t, c in TRIGRAM]:
        schema_editor.execute(f"DROP INDEX IF EXISTS {name}")


class Migration(migrations.Migration):
    dependencies = [("sessions_app", "0005_lifecycle")]

    operations = [
        migrations.CreateModel(
            name="ApiKey",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("name", models.CharField(max_length=100)),
                ("prefix", models.CharField(editable=False, max_length=16, unique=True)),
                ("key_hash", models.CharField(editable=False, max_length=64)),
                (
                    "business_id",
                    models.CharField(
                        blank=True,
                        help_text="If set, the key sees and writes only this business's sessions.",
                        max_length=128,
                    ),
                ),
                ("created_at", models.DateTimeField(default=django.utils.timezone.now, editable=False)),
                ("revoked_at", models.DateTimeField(blank=True, help_text="Set to revoke the key.", null=True)),
                ("last_used_at", models.DateTimeField(blank=True, editable=False, null=True)),
            ],
            options={"verbose_name": "API key", "ordering": ["name"]},
        ),
        migrations.RunPython(create_indexes, drop_indexes),
    ]
