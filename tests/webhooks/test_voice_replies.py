import xml.etree.ElementTree as ET

import pytest

from sessions_app.agents.builtin import ACKNOWLEDGEMENT
from sessions_app.delivery.replies import produce_reply
from sessions_app.models import KeywordAnswer, Message, Role
from tests.twilio_helpers import new_sid
from tests.webhooks.test_voice import say_turn


def spoken(response) -> str:
    gather = ET.fromstring(response.content).find("Gather")
    return " ".join(say.text or "" for say in gather.findall("Say"))


@pytest.mark.django_db(transaction=True)
def test_the_agents_reply_is_spoken_on_the_same_turn_when_it_is_ready(client):
    KeywordAnswer.objects.create(keyword="appointment", answer="We have a slot at ten tomorrow.")
    response = say_turn(client, new_sid("CA"), 1, "I need an appointment")
    assert spoken(response).startswith("We have a slot at ten tomorrow.")
    assert Message.objects.get(role=Role.AGENT).delivery_status == "sent"


@pytest.mark.django_db
def test_a_reply_that_was_not_ready_is_spoken_on_the_next_turn_once(client):
    call = new_sid("CA")
    first = say_turn(client, call, 1, "Hello")  # on-commit callbacks do not run: no reply in time
    assert ACKNOWLEDGEMENT not in spoken(first)
    produce_reply(Message.objects.get(role=Role.CONTACT).pk)  # the worker finishes after the turn ended
    second = say_turn(client, call, 2, "Are you there?")
    assert spoken(second).startswith(ACKNOWLEDGEMENT)
    third = say_turn(client, call, 3, "Bye")
    assert ACKNOWLEDGEMENT not in spoken(third)


@pytest.mark.django_db(transaction=True)
def test_a_redelivered_turn_gets_the_reply_its_first_delivery_spoke(client):
    KeywordAnswer.objects.create(keyword="appointment", answer="We have a slot at ten tomorrow.")
    call = new_sid("CA")
    first = say_turn(client, call, 1, "I need an appointment")
    # Twilio did not get that answer (a timeout), so the caller heard nothing: it sends the turn again.
    again = say_turn(client, call, 1, "I need an appointment")
    assert spoken(again) == spoken(first)
    assert spoken(first).startswith("We have a slot at ten tomorrow.")
    assert Message.objects.filter(role=Role.AGENT).count() == 1
    # Handed out for turn 1 only: the next turn does not repeat it.
    assert "slot at ten" not in spoken(say_turn(client, call, 2, "Thanks"))
