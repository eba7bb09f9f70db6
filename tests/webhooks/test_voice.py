import xml.etree.ElementTree as ET

import pytest
import time_machine

from sessions_app.models import Message, Session
from tests.fixtures import twilio_payload
from tests.twilio_helpers import GATHER_URL, OUR_NUMBER, VOICE_URL, new_sid, post_signed

pytestmark = pytest.mark.django_db
CALLER = "+14155550199"


def call_params(call_sid: str, **extra: str) -> dict[str, str]:
    return {"CallSid": call_sid, "From": CALLER, "To": OUR_NUMBER, "AccountSid": "AC" + "0" * 32, **extra}


def say_turn(client, call_sid: str, turn: int, speech: str):
    path = f"{GATHER_URL}?turn={turn}"
    return post_signed(client, path, call_params(call_sid, SpeechResult=speech, Confidence="0.9"))


def gather_action(response) -> str:
    root = ET.fromstring(response.content)
    gather = root.find("Gather")
    assert gather is not None
    assert gather.get("input") == "speech"
    return gather.get("action")


def test_a_call_is_answered_with_a_greeting_and_a_speech_gather(client):
    response = post_signed(client, VOICE_URL, call_params(new_sid("CA")))
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/xml")
    assert gather_action(response) == f"{GATHER_URL}?turn=1"
    assert b"<Say>" in response.content
    assert not Message.objects.exists()


def test_each_turn_is_a_message_in_the_callers_voice_session(client):
    call = new_sid("CA")
    with time_machine.travel("2025-01-15 10:00:00+00:00", tick=False) as clock:
        first = say_turn(client, call, 1, "I need an appointment")
        assert gather_action(first) == f"{GATHER_URL}?turn=2"
        clock.shift(20)
        second = say_turn(client, call, 2, "Tomorrow morning please")
        assert gather_action(second) == f"{GATHER_URL}?turn=3"
    session = Session.objects.get()
    assert session.channel_kind == "voice"
    assert session.title == f"Call from {CALLER}"
    assert session.message_count == 2
    assert list(session.messages.values_list("external_id", flat=True)) == [f"{call}:1", f"{call}:2"]


def test_a_real_gather_payload_is_stored(client):
    response = post_signed(client, f"{GATHER_URL}?turn=1", twilio_payload("voice_gather"))
    assert response.status_code == 200
    message = Message.objects.get()
    assert message.content == "I would like to book an appointment."
    assert message.metadata["confidence"] == "0.9172"


def test_a_redelivered_turn_is_stored_once(client):
    call = new_sid("CA")
    say_turn(client, call, 1, "Hello")
    again = say_turn(client, call, 1, "Hello")
    assert again.status_code == 200
    assert Message.objects.count() == 1


def test_silence_stores_nothing_and_asks_again(client):
    call = new_sid("CA")
    response = post_signed(client, f"{GATHER_URL}?turn=3", call_params(call))
    assert response.status_code == 200
    assert gather_action(response) == f"{GATHER_URL}?turn=3"
    assert not Message.objects.exists()


@pytest.mark.parametrize(
    ("path", "params", "field"),
    [
        (VOICE_URL, {"From": CALLER, "To": OUR_NUMBER}, "CallSid"),
        (VOICE_URL, {"CallSid": "CA1", "To": OUR_NUMBER}, "From"),
        (
            f"{GATHER_URL}?turn=x",
            {"CallSid": "CA1", "From": CALLER, "To": OUR_NUMBER, "SpeechResult": "hi"},
            "turn",
        ),
        (GATHER_URL, {"CallSid": "CA1", "From": CALLER, "To": OUR_NUMBER, "SpeechResult": "hi"}, "turn"),
        (
            f"{GATHER_URL}?turn=1",
            {"CallSid": "CA1", "From": "anonymous", "To": OUR_NUMBER, "SpeechResult": "hi"},
            "From",
        ),
    ],
)
def test_it_rejects_bad_voice_input_naming_the_field(client, path, params, field):
    response = post_signed(client, path, params)
    assert response.status_code == 400
    assert response.content.decode().startswith(f"{field}:")
    assert not Message.objects.exists()
