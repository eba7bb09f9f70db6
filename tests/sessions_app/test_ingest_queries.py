"""How many queries one inbound SMS costs: the webhook's budget, so that a regression fails here.

Counted inside the test's transaction, where the webhook's own transaction is a savepoint (the same
two statements as BEGIN and COMMIT) and the agent's reply, which runs after commit, is not counted:
these are the ingest path's own queries.

The rule is one call of `sessions_app_record_inbound` (sessions_app/ingest/record_inbound.sql): the
whole message is that one query once the process remembers the channel, and four (savepoint,
channel, the call, release) when it must read the channel first, which is the case in these tests
until the first commit.

Before this budget (the reuse rule in a nested savepoint) the three cases cost 14, 11 and 8 queries
on PostgreSQL; then 12, 9 and 6 with the ORM; now 4 in every case, 1 with a remembered channel.
"""

import pytest
from django.db import connection

from sessions_app.models import Contact, Event, Message, Session
from tests.factories import EventEndpointFactory
from tests.twilio_helpers import SMS_URL, post_signed, send_sms, sms_params

pytestmark = pytest.mark.django_db


def test_the_first_text_of_a_new_number_takes_at_most_4_queries(client, django_assert_max_num_queries):
    # savepoint, channel, the call, release
    send_sms(client, "+15550000001", "provisions the channel")
    with django_assert_max_num_queries(4):
        assert send_sms(client, "+15551234567", "Hello").status_code == 200
    assert Session.objects.get(contact__phone="+15551234567").message_count == 1


def test_a_text_that_joins_a_session_takes_at_most_4_queries(client, django_assert_max_num_queries):
    send_sms(client, "+15551234567", "Hello")
    with django_assert_max_num_queries(4):
        assert send_sms(client, "+15551234567", "Again").status_code == 200
    assert Session.objects.get().message_count == 2


def test_a_redelivery_takes_at_most_5_queries(client, django_assert_max_num_queries):
    # savepoint, channel, the call (found: nothing written), the first delivery's message, release
    params = sms_params("+15551234567", "Hello")
    post_signed(client, SMS_URL, params)
    with django_assert_max_num_queries(5):
        assert post_signed(client, SMS_URL, params).status_code == 200
    assert Message.objects.count() == 1 and Contact.objects.count() == 1


def test_a_text_on_a_remembered_channel_takes_one_query(
    client, django_assert_max_num_queries, django_capture_on_commit_callbacks
):
    # As above without the channel: it was remembered when the first text committed.
    with django_capture_on_commit_callbacks(execute=True):
        send_sms(client, "+15551234567", "Hello")
    with django_assert_max_num_queries(1):
        assert send_sms(client, "+15551234567", "Again").status_code == 200
    assert Message.objects.filter(content="Again").exists()


def test_a_text_with_subscribers_on_a_remembered_channel_takes_two_queries(
    client, django_assert_max_num_queries, django_capture_on_commit_callbacks
):
    # The call (which takes the events' numbers and returns what their payloads show) and the
    # INSERT of the events with their deliveries: the session is not written or read again.
    EventEndpointFactory(event_types=["*"])
    with django_capture_on_commit_callbacks(execute=True):
        send_sms(client, "+15551234567", "Hello")
    with django_assert_max_num_queries(2):
        assert send_sms(client, "+15551234567", "Again").status_code == 200
    assert Event.objects.filter(type="message.created", body__contains="Again").count() == 1


def test_parameters_are_bound_by_the_server_and_no_statement_stays_prepared(client):
    """The ingest call's values travel as parameters (not quoted into the SQL), and nothing is
    prepared under a name: a named statement would outlive a migration that changes the function's
    result, and would need settings of its own behind a PgBouncer in transaction mode."""
    import psycopg

    for number in range(8):  # beyond psycopg's default threshold (5) for preparing a statement
        assert send_sms(client, f"+1555123456{number}", "Hello").status_code == 200
    raw = connection.connection
    assert not isinstance(raw.cursor(), psycopg.ClientCursor)
    assert raw.prepare_threshold is None
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_prepared_statements")
        assert cursor.fetchone()[0] == 0


def test_a_new_numbers_first_text_takes_no_pair_lock_and_later_ones_do():
    """Nothing can exist for a contact created in this transaction (record_inbound.sql), so its first
    message skips the lock, the redelivery check and the session lookup; the next one takes them."""
    from sessions_app.ingest.rule import InboundMessage, record_phone_message

    def advisory_locks_held() -> int:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid()"
            )
            return cursor.fetchone()[0]

    def text(external_id: str):
        return record_phone_message(
            kind="sms",
            to="+15005550006",
            from_phone="+15557654321",
            inbound=InboundMessage(content="Hello", provider="twilio", external_id=external_id),
        )

    first = text("SM1")  # the test's transaction holds every lock until it ends
    assert first.created_session and advisory_locks_held() == 0
    assert text("SM1").duplicate and advisory_locks_held() == 1
    joined = text("SM2")
    assert not joined.created_session and joined.session.pk == first.session.pk
    assert Session.objects.get().message_count == 2


def test_broadcasting_an_inbound_text_to_sockets_takes_no_query(django_assert_num_queries):
    """The socket event is built from what the rule returned: reading a field the rule did not load
    (the contact's business, once) cost a query per message, about a fifth of a webhook's time."""
    from sessions_app.ingest.rule import InboundMessage, record_phone_message
    from sessions_app.realtime.publish import message_event

    result = record_phone_message(
        kind="sms",
        to="+15005550006",
        from_phone="+15557654321",
        inbound=InboundMessage(content="Hello", provider="twilio", external_id="SM1"),
    )
    with django_assert_num_queries(0):
        message_event(result.message, result.session)
