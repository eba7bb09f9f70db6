import pytest
import time_machine

from sessions_app.delivery.replies import produce_reply
from sessions_app.models import Message, ReplyState, Role, Session
from tests.twilio_helpers import send_sms

pytestmark = pytest.mark.django_db


def test_three_texts_in_make_six_messages(client, django_capture_on_commit_callbacks):
    with time_machine.travel("2025-01-15 10:00:00+00:00", tick=False) as clock:
        for text in ["Hello", "Are you there?", "Can you help?"]:
            with django_capture_on_commit_callbacks(execute=True):
                assert send_sms(client, "+1234567890", text).status_code == 200
            clock.shift(60)
    session = Session.objects.get()
    assert session.message_count == 6
    roles = list(session.messages.values_list("role", flat=True))
    assert roles == [Role.CONTACT, Role.AGENT] * 3
    reply = session.messages.filter(role=Role.AGENT).first()
    assert reply.metadata["source"] == "builtin"
    assert reply.metadata["responseId"].startswith("resp_")
    assert reply.metadata["toolsUsed"] == []
    assert not Message.objects.exclude(reply_state__in=[ReplyState.DONE, ReplyState.NONE]).exists()


def test_a_reply_is_produced_once_however_often_it_is_asked_for(client):
    send_sms(client, "+1234567890", "Hello")  # on-commit callbacks not run: the reply is still owed
    inbound = Message.objects.get()
    assert inbound.reply_state == ReplyState.OWED
    first = produce_reply(inbound.pk)
    second = produce_reply(inbound.pk)
    assert first is not None and first == second
    assert Message.objects.filter(role=Role.AGENT).count() == 1
    assert Session.objects.get().message_count == 2
