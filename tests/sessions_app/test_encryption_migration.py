"""Migration 0002 encrypts metadata that was stored in the clear, and its reverse decrypts it."""

import uuid

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from sessions_app.models import Session

BEFORE = [("sessions_app", "0001_initial")]
AFTER = [("sessions_app", "0002_privacy")]


def migrate(targets):
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(targets)
    return executor


def raw_metadata(pk: uuid.UUID) -> str:
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT metadata FROM {Session._meta.db_table}")  # noqa: S608
        (value,) = cursor.fetchone()
    return value if isinstance(value, str) else str(value)


@pytest.mark.django_db(transaction=True)
def test_existing_plaintext_metadata_is_encrypted_and_decrypted_back():
    executor = migrate(BEFORE)
    old_apps = executor.loader.project_state(BEFORE).apps
    channel = old_apps.get_model("sessions_app", "Channel").objects.create(kind="sms", address="+15005550006")
    pk = uuid.uuid4()
    old_apps.get_model("sessions_app", "Session").objects.create(
        id=pk, channel=channel, channel_kind="sms", metadata={"fromNumber": "+15551234567"}
    )
    assert "+15551234567" in raw_metadata(pk)
    try:
        migrate(AFTER)
        assert "+15551234567" not in raw_metadata(pk)
        # only(): the model's later columns (status_group, migration 0014) do not exist yet here.
        assert Session.objects.only("metadata").get(pk=pk).metadata == {"fromNumber": "+15551234567"}

        migrate(BEFORE)
        assert "+15551234567" in raw_metadata(pk)
    finally:
        migrate(MigrationExecutor(connection).loader.graph.leaf_nodes())  # latest, for the next tests
    assert Session.objects.get(pk=pk).metadata == {"fromNumber": "+15551234567"}
