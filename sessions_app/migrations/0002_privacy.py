"""Session.metadata becomes encrypted (text column holding Fernet tokens); the erasure audit table.

The column changes type first (on PostgreSQL jsonb -> text keeps the JSON as text), then every
existing row is encrypted in keyset batches. Backwards: rows are decrypted to JSON text, then the
column goes back to JSON.
"""

import json

import django.utils.timezone
from django.db import migrations, models
from django.db.models.functions import Cast

import sessions_app.privacy.fields
from sessions_app.privacy import crypto

BATCH = 500


def _rewrite(apps, convert):
    Session = apps.get_model("sessions_app", "Session")
    last = None
    while True:
        rows = Session.objects.order_by("pk").annotate(raw=Cast("metadata", models.TextField()))
        if last is not None:
            rows = rows.filter(pk__gt=last)
        batch = list(rows.values_list("pk", "raw")[:BATCH])
        if not batch:
            return
        for pk, raw in batch:
            new = convert(pk, raw)
            if new is not None:
                Session.objects.filter(pk=pk).update(metadata=crypto.Ciphertext(new))
        last = batch[-1][0]


def encrypt_existing(apps, schema_editor):
    def convert(pk, raw):
        if raw is None:
            return None
        try:
            crypto.decrypt_json(raw)
            return None  # already encrypted (a re-run)
        except crypto.DecryptionError:
            pass
        return crypto.encrypt_json(json.loads(raw))

    _rewrite(apps, convert)


def decrypt_existing(apps, schema_editor):
    def convert(pk, raw):
        if raw is None:
            return None
        try:
            return json.dumps(crypto.decrypt_json(raw))
        except crypto.DecryptionError as exc:
            raise RuntimeError(f"Session {pk}: metadata cannot be decrypted: {exc}") from None

    _rewrite(apps, convert)


class Migration(migrations.Migration):

    dependencies = [
        ('sessions_app', '0001_initial'),
    ]

    operations = [
        migrations.CreateModel(
            name='ErasureRecord',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('actor', models.CharField(help_text='e.g. "staff:alice", "cli:root".', max_length=150)),
                ('reference', models.CharField(blank=True, help_text="The request's reference (e.g. a ticket number); never the person's name or number.", max_length=128)),
                ('deleted', models.JSONField(default=dict, help_text='Rows removed per kind, e.g. {"sessions_app.Message": 12}.')),
                ('created_at', models.DateTimeField(default=django.utils.timezone.now, editable=False)),
            ],
            options={
                'ordering': ['-created_at', '-id'],
            },
        ),
        migrations.AlterField(
            model_name='session',
            name='metadata',
            field=sessions_app.privacy.fields.EncryptedJSONField(blank=True, default=dict),
        ),
        migrations.RunPython(encrypt_existing, decrypt_existing),
    ]
