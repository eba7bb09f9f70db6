"""The reuse rule's database functions, called directly (sessions_app/ingest/record_inbound.sql).

The webhook and API tests drive the rule through its callers; these pin the function's own edges:
the window's limit, the named session, a redelivery, a session without messages, the contact it
finds or creates, and that it writes every column the models have.
"""

import re
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection

from sessions_app.models import Contact, Message, Session
from sessions_app.sql import INGEST, sql_text
from tests.factories import ChannelFactory, ContactFactory, SessionFactory

pytestmark = pytest.mark.django_db

NOON = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
WINDOW = timedelta(minutes=5)
CALL = (
    "SELECT outcome, gap, contact_id, message_id, id FROM sessions_app_record_inbound("
    "%s, %s, %s, %s, %s, '', '', %s, %s, %s, %s, 'sms', 'SMS from test', '', '', '', NULL, %s, "
    "'contact', %s, '[]', '{}', 'owed')"
)


def record(channel, now, *, contact=None, phone="", external_id=None, preferred=None, content="hi"):
    """One call of the rule; (outcome, gap, contact id, message id, session id)."""
    metadata = Session._meta.get_field("metadata").get_prep_value({})
    with connection.cursor() as cursor:
        cursor.execute(
            CALL,
            [
                channel.pk,
                WINDOW,
                now,
                contact.pk if contact else None,
                phone,
                "twilio",
                external_id,
                preferred,
                uuid.uuid4(),
                metadata,
                content,
            ],
        )
        return cursor.fetchone()


def inserted_columns(table: str) -> set[str]:
    """The columns the SQL file's INSERT INTO `table` names."""
    match = re.search(rf"INSERT INTO {table} \(([^)]*)\)", sql_text(INGEST))
    assert match, table
    return {column.strip() for column in match.group(1).split(",")}


def model_columns(model, *, but: tuple[str, ...] = ()) -> set[str]:
    return {field.column for field in model._meta.concrete_fields} - set(but)


def test_it_writes_every_column_of_a_new_session_message_and_contact():
    # The session's search document is the database's own column (search/document.sql).
    assert inserted_columns("sessions_app_session") == model_columns(Session) | {"search_document"}
    assert inserted_columns("sessions_app_message") == model_columns(Message, but=("id",))
    assert inserted_columns("sessions_app_contact") == model_columns(Contact, but=("id",))


def test_a_message_at_the_windows_limit_joins_and_one_just_past_it_opens_a_new_session():
    channel, contact = ChannelFactory(), ContactFactory()
    opened = record(channel, NOON, contact=contact)
    assert opened[0] == "opened"
    joined = record(channel, NOON + WINDOW, contact=contact)
    assert joined[0] == "reused" and joined[4] == opened[4] and joined[1] == 300.0
    later = record(channel, NOON + 2 * WINDOW + timedelta(microseconds=1), contact=contact)
    assert later[0] == "gap" and later[4] != opened[4]
    assert Session.objects.get(pk=opened[4]).message_count == 2


def test_a_named_active_session_is_joined_whatever_the_gap_and_an_ended_one_is_not():
    channel, contact = ChannelFactory(), ContactFactory()
    first = record(channel, NOON, contact=contact)
    second = record(channel, NOON + 2 * WINDOW, contact=contact)  # newer, and the pair's newest
    named = record(channel, NOON + 3 * WINDOW, contact=contact, preferred=first[4])
    assert named[0] == "named" and named[4] == first[4] and second[4] != first[4]
    Session.objects.filter(pk=first[4]).update(status="closed")
    after = record(channel, NOON + 3 * WINDOW, contact=contact, preferred=first[4])
    assert after[0] == "reused" and after[4] == second[4]


def test_a_named_session_of_another_contact_is_not_joined():
    channel = ChannelFactory()
    theirs = record(channel, NOON, contact=ContactFactory())
    mine = record(channel, NOON, contact=ContactFactory(), preferred=theirs[4])
    assert mine[0] == "opened" and mine[4] != theirs[4]


def test_a_redelivery_stores_nothing_and_answers_with_the_first_delivery():
    channel, contact = ChannelFactory(), ContactFactory()
    first = record(channel, NOON, contact=contact, external_id="SM1")
    again = record(channel, NOON + timedelta(seconds=5), contact=contact, external_id="SM1", content="x")
    assert again[0] == "duplicate" and (again[3], again[4]) == (first[3], first[4])
    assert Message.objects.count() == 1 and Session.objects.get().message_count == 1


def test_an_active_session_without_messages_counts_as_the_pairs_newest():
    channel, contact = ChannelFactory(), ContactFactory()
    record(channel, NOON, contact=contact)
    empty = SessionFactory(channel=channel, contact=contact, last_message_at=None, created_at=NOON)
    joined = record(channel, NOON + timedelta(minutes=1), contact=contact)
    assert joined[0] == "reused" and joined[4] == empty.pk and joined[1] == 60.0


def test_a_phone_message_finds_or_creates_its_contact_once():
    channel = ChannelFactory()
    first = record(channel, NOON, phone="+15551230001")
    second = record(channel, NOON + timedelta(minutes=1), phone="+15551230001")
    assert first[2] == second[2] == Contact.objects.get(phone="+15551230001").pk
    assert (first[0], second[0]) == ("opened", "reused")


def test_the_phone_contact_function_reports_whether_it_created_the_row_and_keeps_whatsapp_names():
    def contact(name: str = "") -> tuple[int, bool]:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT id, created FROM sessions_app_phone_contact(%s, %s, %s, %s)",
                ["+15551230002", "", name, NOON],
            )
            return cursor.fetchone()

    created = contact("Ann")
    again = contact("Ann B.")
    assert created[1] is True and again == (created[0], False)
    assert Contact.objects.get().whatsapp_profile_name == "Ann B."
    contact()  # an empty name keeps the stored one
    assert Contact.objects.get().whatsapp_profile_name == "Ann B."
