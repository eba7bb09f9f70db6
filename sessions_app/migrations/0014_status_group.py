"""The status group: what the session table's indexes know of a status (docs/sweep.md, "Stop 17").

`status_group` is a stored generated column: "open" for active and abandoned sessions, the status
itself otherwise. The status index and the reuse rule's partial index now name the group instead of
the status, so no index mentions `status`: the sweep's active → abandoned change writes no index
entry (a heap-only update), provided the new row version fits on its page. Hence fillfactor 60 for
the session table (PostgreSQL; it applies to pages written from now on: `VACUUM FULL
sessions_app_session` makes an existing table's pages leave the room too).

StatusChange rows lost their foreign key constraint. The ingest function's reuse lookup named the
group too, so that the partial index served it. Migration 0015 undid all of this (docs/sweep.md,
"Stop 18": integrity and list speed before sweep speed).
`SweepMark` keeps where each drain of the sweep stopped: the status index cannot find quiet active
sessions among the abandoned ones any more, so the sweep starts where it left off (sweep.py).
"""

import django.db.models.deletion

from django.conf import settings
from django.db import migrations, models


def forward(apps, schema_editor):  # type: ignore[no-untyped-def]
    schema_editor.execute("ALTER TABLE sessions_app_session SET (fillfactor = 60)")


def backward(apps, schema_editor):  # type: ignore[no-untyped-def]
    schema_editor.execute("ALTER TABLE sessions_app_session RESET (fillfactor)")


class Migration(migrations.Migration):
    dependencies = [
        ("sessions_app", "0013_ingest_new_contact"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.CreateModel(
            name="SweepMark",
            fields=[
                ("key", models.CharField(max_length=200, primary_key=True, serialize=False)),
                (
                    "source",
                    models.CharField(
                        choices=[
                            ("active", "Active"),
                            ("closed", "Closed"),
                            ("resolved", "Resolved"),
                            ("completed", "Completed"),
                            ("abandoned", "Abandoned"),
                            ("archived", "Archived"),
                        ],
                        max_length=16,
                    ),
                ),
                (
                    "swept_before",
                    models.DateTimeField(
                        help_text="Sessions of this scope quiet before this were looked at."
                    ),
                ),
                (
                    "full_pass_at",
                    models.DateTimeField(help_text="When a drain from the oldest session last finished."),
                ),
            ],
        ),
        migrations.RemoveIndex(
            model_name="session",
            name="session_reuse_lookup",
        ),
        migrations.RemoveIndex(
            model_name="session",
            name="session_status_recent",
        ),
        migrations.AddField(
            model_name="session",
            name="status_group",
            field=models.GeneratedField(
                db_persist=True,
                expression=models.Case(
                    models.When(status__in=("active", "abandoned"), then=models.Value("open")),
                    default=models.F("status"),
                ),
                output_field=models.CharField(max_length=16),
            ),
        ),
        migrations.AddIndex(
            model_name="session",
            index=models.Index(
                condition=models.Q(("status_group", "open")),
                fields=["channel", "contact", "-last_message_at"],
                name="session_open_reuse_lookup",
            ),
        ),
        migrations.AddIndex(
            model_name="session",
            index=models.Index(
                fields=["status_group", "-last_activity_at", "-id"], name="session_group_recent"
            ),
        ),
        migrations.AlterField(
            model_name="statuschange",
            name="session",
            field=models.ForeignKey(
                db_constraint=False,
                db_index=False,
                on_delete=django.db.models.deletion.CASCADE,
                related_name="status_changes",
                to="sessions_app.session",
            ),
        ),
        migrations.RunPython(forward, backward, elidable=False),
    ]
