"""Fewer index entries per session rewrite (the lifecycle sweep, every inbound message): docs/sweep.md.

A status change cannot be a HOT update (status is indexed), so every index on the session table
gets a new entry for every session the sweep moves. This drops the ones that duplicate another
index and narrows the ones most sessions have nothing to put in:

- `session_created` (0006) is the same index as `session_created_recent`;
- the single-column indexes on `contact`, `owner` and the status change's `session` are prefixes of
  `session_contact_recent`, `session_owner_recent` and `status_change_session`;
- `external_id` (unique), business, owner, location and agent are empty on every Twilio session and
  every filter names a value, so their indexes become partial (the LIKE twin of the unique index,
  which nothing uses, goes);
- `session_message_count` orders by the count alone, which is all `?ordering=-message_count`
  asks: ties then lie in physical order instead of random uuid order, so new entries land together.
"""

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models


# (name, columns before, columns after): indexes 0006 created in plain SQL, re-created narrower here.
RECREATED = [
    ("session_location_recent", "(location_id, last_activity_at DESC)", "(location_id, last_activity_at DESC) WHERE location_id <> ''"),
    ("session_agent_recent", "(agent_id, last_activity_at DESC)", "(agent_id, last_activity_at DESC) WHERE agent_id <> ''"),
    ("session_message_count", "(message_count DESC, id DESC)", "(message_count DESC)"),
    ("session_created", "(created_at DESC, id DESC)", None),
]


def narrow(apps, schema_editor):
    for name, _, after in RECREATED:
        schema_editor.execute(f"DROP INDEX IF EXISTS {name}")
        if after:
            schema_editor.execute(f"CREATE INDEX {name} ON sessions_app_session {after}")


def widen(apps, schema_editor):
    for name, before, _ in RECREATED:
        schema_editor.execute(f"DROP INDEX IF EXISTS {name}")
        schema_editor.execute(f"CREATE INDEX {name} ON sessions_app_session {before}")


class Migration(migrations.Migration):

    dependencies = [
        ('sessions_app', '0009_ingest_search'),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.RunPython(narrow, widen),
        migrations.RemoveIndex(
            model_name='session',
            name='session_business_recent',
        ),
        migrations.RemoveIndex(
            model_name='session',
            name='session_owner_recent',
        ),
        migrations.AlterField(
            model_name='session',
            name='contact',
            field=models.ForeignKey(blank=True, db_index=False, null=True, on_delete=django.db.models.deletion.PROTECT, related_name='sessions', to='sessions_app.contact'),
        ),
        migrations.AlterField(
            model_name='session',
            name='external_id',
            field=models.CharField(blank=True, help_text='A client-supplied id, e.g. session_1724567890123.', max_length=128, null=True),
        ),
        migrations.AlterField(
            model_name='session',
            name='owner',
            field=models.ForeignKey(blank=True, db_index=False, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='conversation_sessions', to=settings.AUTH_USER_MODEL),
        ),
        migrations.AlterField(
            model_name='statuschange',
            name='session',
            field=models.ForeignKey(db_index=False, on_delete=django.db.models.deletion.CASCADE, related_name='status_changes', to='sessions_app.session'),
        ),
        migrations.AddIndex(
            model_name='session',
            index=models.Index(condition=models.Q(('business_id', ''), _negated=True), fields=['business_id', '-last_activity_at'], name='session_business_recent'),
        ),
        migrations.AddIndex(
            model_name='session',
            index=models.Index(condition=models.Q(('owner__isnull', False)), fields=['owner', '-last_activity_at'], name='session_owner_recent'),
        ),
        migrations.AddConstraint(
            model_name='session',
            constraint=models.UniqueConstraint(condition=models.Q(('external_id__isnull', False)), fields=('external_id',), name='session_external_id_unique'),
        ),
    ]
