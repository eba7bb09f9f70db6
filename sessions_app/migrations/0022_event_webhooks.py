"""Event webhooks (docs/event-webhooks.md): endpoints, the outbox's events, deliveries and their
attempts, and each session's event counter, which the reuse rule's function now writes too (applied
again from sessions_app/ingest/record_inbound.sql)."""

import django.db.models.deletion
import django.utils.timezone
import sessions_app.events.models
import sessions_app.privacy.fields
from sessions_app.sql import INGEST, apply_sql_file
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('sessions_app', '0021_session_boundaries'),
    ]

    operations = [
        migrations.CreateModel(
            name='EventEndpoint',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('url', models.URLField(help_text='Where events are POSTed (https, unless DEBUG is on).', max_length=2000)),
                ('description', models.CharField(blank=True, max_length=255)),
                ('event_types', models.JSONField(default=list, help_text='The event types sent here, e.g. ["message.created"]; ["*"] for all.')),
                ('enabled', models.BooleanField(default=True)),
                ('secret', sessions_app.privacy.fields.EncryptedJSONField(default=sessions_app.events.models.new_secret, editable=False)),
                ('previous_secret', sessions_app.privacy.fields.EncryptedJSONField(blank=True, default=str, editable=False)),
                ('previous_secret_expires_at', models.DateTimeField(blank=True, editable=False, null=True)),
                ('failing_since', models.DateTimeField(blank=True, help_text='Set at the first failed attempt after a success; cleared by one.', null=True)),
                ('disabled_reason', models.CharField(blank=True, max_length=255)),
                ('created_at', models.DateTimeField(default=django.utils.timezone.now, editable=False)),
                ('updated_at', models.DateTimeField(auto_now=True)),
            ],
            options={
                'verbose_name': 'event endpoint',
                'ordering': ['id'],
            },
        ),
        migrations.AddField(
            model_name='session',
            name='event_sequence',
            field=models.PositiveBigIntegerField(db_default=0, default=0, editable=False),
        ),
        migrations.CreateModel(
            name='Event',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('sequence', models.PositiveBigIntegerField(help_text='Grows by exactly 1 with each event of the session.')),
                ('type', models.CharField(choices=[('session.opened', 'A session opened'), ('session.status_changed', "A session's status changed"), ('message.created', 'A message was stored (inbound or outbound)'), ('message.status_changed', "A message's delivery status changed")], max_length=32)),
                ('webhook_id', models.CharField(help_text='The `webhook-id` header.', max_length=40, unique=True)),
                ('body', models.TextField(help_text='The payload, {"type", "timestamp", "data"}, as sent.')),
                ('created_at', models.DateTimeField(default=django.utils.timezone.now)),
                ('session', models.ForeignKey(db_index=False, on_delete=django.db.models.deletion.CASCADE, related_name='events', to='sessions_app.session')),
            ],
            options={
                'ordering': ['id'],
            },
        ),
        migrations.CreateModel(
            name='Delivery',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('session_id', models.UUIDField()),
                ('sequence', models.PositiveBigIntegerField()),
                ('state', models.CharField(choices=[('pending', 'Pending'), ('sending', 'Sending'), ('delivered', 'Delivered'), ('failed', 'Failed (gave up)')], default='pending', max_length=16)),
                ('attempts', models.PositiveSmallIntegerField(default=0)),
                ('next_attempt_at', models.DateTimeField(default=django.utils.timezone.now)),
                ('claimed_at', models.DateTimeField(blank=True, null=True)),
                ('delivered_at', models.DateTimeField(blank=True, null=True)),
                ('last_status_code', models.PositiveSmallIntegerField(blank=True, null=True)),
                ('last_error', models.CharField(blank=True, max_length=255)),
                ('created_at', models.DateTimeField(default=django.utils.timezone.now)),
                ('event', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='deliveries', to='sessions_app.event')),
                ('endpoint', models.ForeignKey(db_constraint=False, on_delete=django.db.models.deletion.CASCADE, related_name='deliveries', to='sessions_app.eventendpoint')),
            ],
            options={
                'verbose_name_plural': 'deliveries',
                'ordering': ['-id'],
            },
        ),
        migrations.CreateModel(
            name='DeliveryAttempt',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('attempted_at', models.DateTimeField(default=django.utils.timezone.now)),
                ('status_code', models.PositiveSmallIntegerField(blank=True, null=True)),
                ('duration_ms', models.PositiveIntegerField(default=0)),
                ('response', models.TextField(blank=True, help_text="The first 1 KB of the answer's body.")),
                ('error', models.CharField(blank=True, max_length=255)),
                ('delivery', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='attempt_log', to='sessions_app.delivery')),
            ],
            options={
                'ordering': ['-attempted_at', '-id'],
                'indexes': [models.Index(fields=['attempted_at'], name='delivery_attempt_time')],
            },
        ),
        migrations.AddIndex(
            model_name='event',
            index=models.Index(fields=['created_at'], name='event_created'),
        ),
        migrations.AddConstraint(
            model_name='event',
            constraint=models.UniqueConstraint(fields=('session', 'sequence'), name='event_session_sequence_unique'),
        ),
        migrations.AddIndex(
            model_name='delivery',
            index=models.Index(condition=models.Q(('state', 'pending')), fields=['endpoint', 'next_attempt_at'], name='delivery_due'),
        ),
        migrations.AddIndex(
            model_name='delivery',
            index=models.Index(condition=models.Q(('state__in', ['pending', 'sending'])), fields=['endpoint', 'session_id', 'sequence'], name='delivery_owed_order'),
        ),
        migrations.AddIndex(
            model_name='delivery',
            index=models.Index(fields=['endpoint', '-id'], name='delivery_endpoint_recent'),
        ),
        migrations.AddConstraint(
            model_name='delivery',
            constraint=models.UniqueConstraint(fields=('event', 'endpoint'), name='delivery_event_endpoint_unique'),
        ),
        apply_sql_file(INGEST),
    ]
