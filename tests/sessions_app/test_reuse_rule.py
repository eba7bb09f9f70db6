"""The reuse rule of seed 003, through the SMS webhook, on a controlled clock."""

from datetime import UTC, datetime, timedelta

import pytest
import time_machine

from sessions_app.lifecycle.transitions import transition_session
from sessions_app.models import Channel, ChannelKind, Message, Session, SessionStatus
from tests.twilio_helpers import OUR_NUMBER, send_sms, send_whatsapp

pytestmark = pytest.mark.django_db

TEN_AM = datetime(2025, 1, 15, 10, 0, 0, tzinfo=UTC)
PERSON_A = "+1234567890"
PERSON_B = "+1987654321"


def at(minutes: float) -> datetime:
    return TEN_AM + timedelta(minutes=minutes)


def test_messages_within_five_minutes_share_one_session(client, caplog):
    caplog.set_level("INFO", logger="sessions_app")
    with time_machine.travel(at(0), tick=False) as clock:
        assert send_sms(client, PERSON_A, "Hello").status_code == 200
        clock.move_to(at(2))
        assert send_sms(client, PERSON_A, "What are your hours?").status_code == 200
        clock.move_to(at(4.5))
        assert send_sms(client, PERSON_A, "Thank you").status_code == 200

    session = Session.objects.get()
    assert session.title == f"SMS from {PERSON_A}"
    assert session.message_count == 3
    assert session.last_message_at == at(4.5)
    assert session.first_message_at == at(0)
    assert session.metadata["fromNumber"] == PERSON_A
    assert session.metadata["firstMessageAt"] == at(0).isoformat()
    assert list(session.messages.values_list("content", flat=True)) == [
        "Hello",
        "What are your hours?",
        "Thank you",
    ]
    # Seed 003's lines, the numbers masked.
    lines = [record.getMessage() for record in caplog.records]
    assert lines.count("SMS received from +1234•••7890 to +1500•••0006") == 3
    assert f"Created new SMS session: {session.pk} for +1234•••7890" in lines
    assert f"Reusing existing session {session.pk} (last message 120s ago)" in lines
    assert f"Reusing existing session {session.pk} (last message 150s ago)" in lines
    assert all("Hello" not in line for line in lines)  # never the text


def test_a_message_after_six_minutes_opens_a_new_session(client, caplog):
    caplog.set_level("INFO", logger="sessions_app")
    with time_machine.travel(at(0), tick=False) as clock:
        send_sms(client, PERSON_A, "Hello")
        clock.move_to(at(6))
        send_sms(client, PERSON_A, "Hi again")

    first, second = Session.objects.order_by("created_at")
    assert first.message_count == 1 and second.message_count == 1
    assert first.messages.get().content == "Hello"
    assert second.messages.get().content == "Hi again"
    lines = [record.getMessage() for record in caplog.records]
    assert lines[-2:] == [
        "Time gap of 360s detected. Creating new session.",
        f"Created new SMS session: {second.pk} for +1234•••7890",
    ]


def test_exactly_five_minutes_still_joins_and_one_second_more_does_not(client):
    with time_machine.travel(at(0), tick=False) as clock:
        send_sms(client, PERSON_A, "one")
        clock.move_to(at(5))
        send_sms(client, PERSON_A, "two")
        clock.move_to(at(10) + timedelta(seconds=1))
        send_sms(client, PERSON_A, "three")
    counts = list(Session.objects.order_by("created_at").values_list("message_count", flat=True))
    assert counts == [2, 1]


def test_two_numbers_get_two_sessions(client):
    with time_machine.travel(at(0), tick=False) as clock:
        send_sms(client, PERSON_A, "Hello")
        clock.move_to(at(1))
        send_sms(client, PERSON_B, "Hi there")
        clock.move_to(at(2))
        send_sms(client, PERSON_A, "Are you there?")
        clock.move_to(at(3))
        send_sms(client, PERSON_B, "Can you help?")

    a = Session.objects.get(contact__phone=PERSON_A)
    b = Session.objects.get(contact__phone=PERSON_B)
    assert list(a.messages.values_list("content", flat=True)) == ["Hello", "Are you there?"]
    assert list(b.messages.values_list("content", flat=True)) == ["Hi there", "Can you help?"]


def test_a_channel_window_overrides_the_global_setting(client, settings):
    settings.SESSION_REUSE_WINDOW = 300
    Channel.objects.create(kind=ChannelKind.SMS, address=OUR_NUMBER, reuse_window=600)
    with time_machine.travel(at(0), tick=False) as clock:
        send_sms(client, PERSON_A, "Hello")
        clock.move_to(at(9))
        send_sms(client, PERSON_A, "Still there?")
        clock.move_to(at(20))
        send_sms(client, PERSON_A, "Much later")
    assert list(Session.objects.order_by("created_at").values_list("message_count", flat=True)) == [2, 1]


def test_the_global_window_is_a_setting(client, settings):
    settings.SESSION_REUSE_WINDOW = 60
    with time_machine.travel(at(0), tick=False) as clock:
        send_sms(client, PERSON_A, "Hello")
        clock.move_to(at(2))
        send_sms(client, PERSON_A, "Two minutes later")
    assert Session.objects.count() == 2


def test_sms_and_whatsapp_from_one_number_are_two_sessions(client):
    with time_machine.travel(at(0), tick=False) as clock:
        send_sms(client, PERSON_A, "Hello by SMS")
        clock.move_to(at(1))
        send_whatsapp(client, PERSON_A, "Hello by WhatsApp")
    sms = Session.objects.get(channel_kind=ChannelKind.SMS)
    whatsapp = Session.objects.get(channel_kind=ChannelKind.WHATSAPP)
    assert sms.contact_id == whatsapp.contact_id
    assert whatsapp.title == f"WhatsApp from {PERSON_A}"


def test_messages_to_two_of_our_numbers_are_two_sessions(client):
    send_sms(client, PERSON_A, "to the first number")
    send_sms(client, PERSON_A, "to the second number", To="+15005550007")
    assert Session.objects.count() == 2
    assert Channel.objects.filter(kind=ChannelKind.SMS).count() == 2


def test_a_closed_session_is_not_reused(client):
    with time_machine.travel(at(0), tick=False) as clock:
        send_sms(client, PERSON_A, "Hello")
        transition_session(Session.objects.get(), SessionStatus.CLOSED, actor="test")
        clock.move_to(at(1))
        send_sms(client, PERSON_A, "Hello again")
    assert Session.objects.filter(status=SessionStatus.ACTIVE).count() == 1
    assert Session.objects.count() == 2


def test_the_newest_active_session_is_the_one_reused(client):
    with time_machine.travel(at(0), tick=False) as clock:
        send_sms(client, PERSON_A, "first conversation")
        clock.move_to(at(10))
        send_sms(client, PERSON_A, "second conversation")
        clock.move_to(at(12))
        send_sms(client, PERSON_A, "follow-up")
    newest = Session.objects.order_by("-created_at").first()
    assert newest.message_count == 2
    assert Message.objects.get(content="follow-up").session == newest


def test_an_unknown_number_provisions_a_channel(client, caplog):
    caplog.set_level("INFO", logger="sessions_app")
    send_sms(client, PERSON_A, "Hello", To="+15005550009")
    channel = Channel.objects.get(address="+15005550009")
    assert channel.kind == ChannelKind.SMS and channel.is_active and channel.reuse_window is None
    assert "Provisioned a new sms channel" in caplog.text
