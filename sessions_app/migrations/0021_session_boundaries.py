"""Session boundaries (docs/session-boundaries.md): a reopen window per channel, merged sessions.

- `Channel.reopen_window`; the reuse rule's function takes the effective window as a new last
  parameter (and returns `reopened_from`), so its old signature is dropped before the file is applied
  again (sessions_app/ingest/record_inbound.sql).
- Status `merged` and `Session.merged_into`, indexed only where set.
- The search document's message update trigger stays out while merge or split move messages
  (sessions_app/search/document.sql): they refresh each document once.
- The window report's daily rollup (WindowRollupState, WindowRollupDay, WindowRollupGaps) and the
  trigger that marks it dirty when sessions are deleted (sessions_app/ingest/window_rollup.sql).
"""

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models

from sessions_app.sql import INGEST, SEARCH, WINDOW_ROLLUP, apply_sql_file

OLD_INGEST_SIGNATURE = (
    "sessions_app_record_inbound(bigint, interval, timestamptz, bigint, text, text, text, text, text, "
    "uuid, uuid, text, text, text, text, text, integer, text, text, text, jsonb, jsonb, text)"
)


class Migration(migrations.Migration):

    dependencies = [
        ('sessions_app', '0020_agent_tool'),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.RunSQL(f"DROP FUNCTION IF EXISTS {OLD_INGEST_SIGNATURE}", migrations.RunSQL.noop),
        migrations.AddField(
            model_name='channel',
            name='reopen_window',
            field=models.PositiveIntegerField(blank=True, help_text='Seconds after a session was closed or resolved in which a new message from its contact reopens it instead of opening a new session; 0 never reopens. Empty: the SESSION_REOPEN_WINDOW setting.', null=True),
        ),
        migrations.AddField(
            model_name='session',
            name='merged_into',
            field=models.ForeignKey(blank=True, db_index=False, editable=False, help_text='The session this one was merged into.', null=True, on_delete=django.db.models.deletion.CASCADE, related_name='merged_from', to='sessions_app.session'),
        ),
        migrations.AlterField(
            model_name='session',
            name='status',
            field=models.CharField(choices=[('active', 'Active'), ('closed', 'Closed'), ('resolved', 'Resolved'), ('completed', 'Completed'), ('abandoned', 'Abandoned'), ('archived', 'Archived'), ('merged', 'Merged')], default='active', max_length=16),
        ),
        migrations.AlterField(
            model_name='statuschange',
            name='from_status',
            field=models.CharField(choices=[('active', 'Active'), ('closed', 'Closed'), ('resolved', 'Resolved'), ('completed', 'Completed'), ('abandoned', 'Abandoned'), ('archived', 'Archived'), ('merged', 'Merged')], max_length=16),
        ),
        migrations.AlterField(
            model_name='statuschange',
            name='to_status',
            field=models.CharField(choices=[('active', 'Active'), ('closed', 'Closed'), ('resolved', 'Resolved'), ('completed', 'Completed'), ('abandoned', 'Abandoned'), ('archived', 'Archived'), ('merged', 'Merged')], max_length=16),
        ),
        migrations.AddIndex(
            model_name='session',
            index=models.Index(condition=models.Q(('merged_into__isnull', False)), fields=['merged_into'], name='session_merged_into'),
        ),
        migrations.CreateModel(
            name='WindowRollupState',
            fields=[
                ('channel', models.OneToOneField(on_delete=django.db.models.deletion.CASCADE, primary_key=True, serialize=False, to='sessions_app.channel')),
                ('rolled_until', models.DateField(blank=True, null=True)),
                ('dirty_before', models.DateTimeField(blank=True, null=True)),
                ('rolled_at', models.DateTimeField(blank=True, null=True)),
            ],
        ),
        migrations.CreateModel(
            name='WindowRollupDay',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('day', models.DateField()),
                ('first_at', models.DateTimeField()),
                ('last_at', models.DateTimeField()),
                ('previous_at', models.DateTimeField(blank=True, null=True)),
                ('channel', models.ForeignKey(db_index=False, on_delete=django.db.models.deletion.CASCADE, related_name='+', to='sessions_app.channel')),
                ('contact', models.ForeignKey(db_index=False, on_delete=django.db.models.deletion.CASCADE, related_name='+', to='sessions_app.contact')),
            ],
            options={
                'indexes': [models.Index(fields=['channel', 'day'], name='window_rollup_day_channel')],
                'constraints': [models.UniqueConstraint(fields=('channel', 'contact', 'day'), name='window_rollup_day_unique')],
            },
        ),
        migrations.CreateModel(
            name='WindowRollupGaps',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('day', models.DateField()),
                ('gap_seconds', models.PositiveIntegerField()),
                ('count', models.PositiveIntegerField()),
                ('channel', models.ForeignKey(db_index=False, on_delete=django.db.models.deletion.CASCADE, related_name='+', to='sessions_app.channel')),
            ],
            options={
                'constraints': [models.UniqueConstraint(fields=('channel', 'day', 'gap_seconds'), name='window_rollup_gaps_unique')],
            },
        ),
        apply_sql_file(INGEST),
        apply_sql_file(SEARCH),
        apply_sql_file(WINDOW_ROLLUP),
    ]
