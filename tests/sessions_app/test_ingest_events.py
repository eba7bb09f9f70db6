"""An inbound message's events: the reuse rule's function takes their numbers and returns what their
payloads show (sessions_app/ingest/record_inbound.sql), so nothing is read again. These pin that the
payloads are exactly what a read of the session after the change shows, whatever the outcome, and
that each outcome takes one number per event with a subscriber, no more."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.core.serializers.json import DjangoJSONEncoder

from sessions_app.api.representations import SessionSerializer
from sessions_app.ingest.chat import record_chat_message
from sessions_app.ingest.rule import InboundMessage, IngestResult, record_phone_message
from sessions_app.lifecycle.transitions import transition_session
from sessions_app.models import Channel, ChannelKind, Contact, Event, Session, SessionStatus
from tests.factories import EventEndpointFactory
from tests.twilio_helpers import OUR_NUMBER

pytestmark = pytest.mark.django_db

PERSON = "+15551239001"


def whatsapp(text: str, *, profile_name: str = "Ann") -> IngestResult:
    return record_phone_message(
        kind=ChannelKind.WHATSAPP,
        to=OUR_NUMBER,
        from_phone=PERSON,
        inbound=InboundMessage(content=text, provider="twilio"),
        whatsapp_id=PERSON.lstrip("+"),
        profile_name=profile_name,
    )


def as_read_now(session_id: Any) -> dict[str, Any]:
    """The session as a read of it shows it now, as an event's payload would hold it."""
    session = Session.objects.select_related("contact").get(pk=session_id)
    return json.loads(json.dumps(SessionSerializer(session).data, cls=DjangoJSONEncoder))


def events_of(session_id: Any) -> list[tuple[int, str, dict[str, Any]]]:
    """(sequence, type, data) of the session's events, in order."""
    rows = Event.objects.filter(session_id=session_id).order_by("sequence")
    return [(event.sequence, event.type, json.loads(event.body)["data"]) for event in rows]


def test_it_shows_the_session_and_contact_as_a_read_after_each_outcome_would():
    Channel.objects.create(kind=ChannelKind.WHATSAPP, address=OUR_NUMBER, reopen_window=600)
    EventEndpointFactory(event_types=["*"])

    opened = whatsapp("Is my order shipped?")
    shown = as_read_now(opened.session.pk)
    assert shown["contact"]["name"] == "Ann" and shown["metadata"]["fromNumber"] == PERSON
    assert [(n, kind, data["session"]) for n, kind, data in events_of(opened.session.pk)] == [
        (1, "session.opened", shown),
        (2, "message.created", shown),
    ]

    Contact.objects.filter(phone=PERSON).update(display_name="Ann Staff-Edited", company="Acme")
    Session.objects.filter(pk=opened.session.pk).update(metadata={"note": "edited"}, title="Renamed")
    reused = whatsapp("And the invoice?", profile_name="Ann B.")
    assert reused.session.pk == opened.session.pk
    shown = as_read_now(opened.session.pk)
    assert shown["contact"]["name"] == "Ann Staff-Edited" and shown["metadata"] == {"note": "edited"}
    assert events_of(opened.session.pk)[2:] == [
        (
            3,
            "message.created",
            {"session": shown, "message": events_of(opened.session.pk)[2][2]["message"], "sequence": 3},
        )
    ]

    transition_session(Session.objects.get(pk=opened.session.pk), SessionStatus.CLOSED, actor="staff:alice")
    reopened = whatsapp("One more thing")
    assert reopened.session.pk == opened.session.pk and reopened.session.status == SessionStatus.ACTIVE
    shown = as_read_now(opened.session.pk)
    later = events_of(opened.session.pk)[3:]
    assert [(n, kind) for n, kind, _ in later] == [
        (4, "session.status_changed"),
        (5, "session.status_changed"),
        (6, "message.created"),
    ]
    assert later[1][2] | {"session": None} == {
        "session": None,
        "from": "closed",
        "to": "active",
        "actor": "system:reopen",
        "sequence": 5,
    }
    assert later[1][2]["session"] == later[2][2]["session"] == shown
    assert Session.objects.get(pk=opened.session.pk).event_sequence == 6


def test_a_contact_the_caller_names_is_shown_as_a_read_would():
    EventEndpointFactory(event_types=["message.created", "session.opened"])
    first = record_chat_message(business_id="B1", user_id="u1", text="hello", source="http")
    second = record_chat_message(business_id="B1", user_id="u1", text="again", source="http")
    assert second.session.pk == first.session.pk
    shown = as_read_now(first.session.pk)
    assert shown["contact"]["external_user_id"] == "u1" and shown["metadata"]["businessType"] == ""
    events = events_of(first.session.pk)
    assert [(n, kind) for n, kind, _ in events] == [
        (1, "session.opened"),
        (2, "message.created"),
        (3, "message.created"),
    ]
    assert events[2][2]["session"] == shown


@pytest.mark.parametrize(
    ("types", "expected"),
    [
        (["message.created"], [(1, "message.created"), (2, "message.created"), (3, "message.created")]),
        (["session.opened"], [(1, "session.opened")]),
        (["session.status_changed"], [(1, "session.status_changed"), (2, "session.status_changed")]),
        (["message.status_changed"], []),
    ],
)
def test_each_outcome_takes_one_number_per_event_with_a_subscriber(types, expected):
    Channel.objects.create(kind=ChannelKind.WHATSAPP, address=OUR_NUMBER, reopen_window=600)
    EventEndpointFactory(event_types=types)
    session_id = whatsapp("opens").session.pk
    whatsapp("joins")
    transition_session(Session.objects.get(pk=session_id), SessionStatus.CLOSED, actor="staff:alice")
    assert whatsapp("reopens").session.pk == session_id
    assert [(n, kind) for n, kind, _ in events_of(session_id)] == expected
    assert Session.objects.get(pk=session_id).event_sequence == len(expected)
