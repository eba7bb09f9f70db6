"""Seed 001's client code (sendFirstMessage, getActiveSession, getSessionHistory, loadSessionMessages,
getSession) against /agent/api/ with an API key."""

from __future__ import annotations

import re

import pytest
import time_machine

from sessions_app.lifecycle.transitions import transition_session
from sessions_app.models import Contact, Message, Role, Session, SessionStatus
from sessions_app.surfaces.agent_api import STATUS_001

ISO_MS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


def first_message(api, key, text="Bună ziua!", **extra):
    body = {
        "businessId": "B0100001",
        "locationId": "L0100001",
        "userId": "user_123",
        "message": text,
        "businessType": "dental",
        **extra,
    }
    return api.post("/agent/api/messages", body, auth=key)


@pytest.mark.django_db(transaction=True)
def test_a_first_message_opens_a_session_and_answers_with_the_agents_reply(api, service_key):
    response = first_message(api, service_key)
    assert response.status_code == 200, response.content
    data = response.json()
    assert set(data) == {"success", "responseId", "message", "actions", "timestamp", "sessionId"}
    assert data["success"] is True
    assert data["responseId"].startswith("resp_")
    assert data["message"] and data["actions"] == []
    assert ISO_MS.match(data["timestamp"])
    session = Session.objects.get(pk=data["sessionId"])
    assert session.business_id == "B0100001" and session.location_id == "L0100001"
    assert session.metadata["businessType"] == "dental"
    assert session.contact.external_user_id == "user_123"
    assert list(session.messages.values_list("role", flat=True)) == [Role.CONTACT, Role.AGENT]
    assert session.message_count == 2


@pytest.mark.django_db(transaction=True)
def test_later_messages_join_the_users_active_session_even_after_a_long_pause(api, service_key):
    with time_machine.travel("2025-10-12 10:00:00+00:00", tick=False) as clock:
        first = first_message(api, service_key).json()["sessionId"]
        clock.shift(6 * 60)  # longer than the 5-minute reuse window of phone channels
        second = first_message(api, service_key, text="Still there?").json()["sessionId"]
    assert first == second
    assert Session.objects.get(pk=first).message_count == 4


@pytest.mark.django_db(transaction=True)
def test_a_closed_or_abandoned_session_is_never_appended_to(api, service_key):
    first = first_message(api, service_key).json()["sessionId"]
    transition_session(Session.objects.get(pk=first), SessionStatus.CLOSED, actor="test")
    second = first_message(api, service_key, text="Continuing conversation...").json()["sessionId"]
    assert second != first
    # Naming the closed session explicitly does not reopen it either.
    transition_session(Session.objects.get(pk=second), SessionStatus.ABANDONED, actor="test")
    third = first_message(api, service_key, sessionId=second).json()["sessionId"]
    assert third not in (first, second)
    assert Session.objects.get(pk=first).message_count == 2


@pytest.mark.django_db(transaction=True)
def test_users_and_businesses_get_separate_sessions(api, service_key):
    a = first_message(api, service_key).json()["sessionId"]
    b = first_message(api, service_key, userId="user_456").json()["sessionId"]
    c = first_message(api, service_key, businessId="B0200002").json()["sessionId"]
    assert len({a, b, c}) == 3
    assert Contact.objects.filter(external_user_id="user_123").count() == 2


def test_when_the_reply_is_late_it_answers_202_with_the_session_id(api, service_key, settings):
    settings.AGENT_REPLY_TIMEOUT = 0  # on-commit callbacks do not run here: the reply stays owed
    response = first_message(api, service_key)
    assert response.status_code == 202
    data = response.json()
    assert data["success"] is True and data["pending"] is True and data["message"] is None
    assert Session.objects.filter(pk=data["sessionId"]).exists()


@pytest.mark.django_db(transaction=True)
def test_active_history_messages_and_session_read_as_the_seed_shows(api, service_key):
    session_id = first_message(api, service_key).json()["sessionId"]

    active = api.get("/agent/api/sessions/business/B0100001/user/user_123/active", auth=service_key)
    assert active.status_code == 200
    body = active.json()
    assert set(body) == {
        "sessionId", "businessId", "locationId", "userId", "status",
        "createdAt", "updatedAt", "lastMessageAt", "metadata",
    }  # fmt: skip
    assert body["sessionId"] == session_id and body["status"] == "active" and body["userId"] == "user_123"
    assert body["metadata"]["businessType"] == "dental" and body["metadata"]["context"] == {}
    assert ISO_MS.match(body["lastMessageAt"])

    history = api.get(
        "/agent/api/sessions/business/B0100001/user/user_123/history?limit=10", auth=service_key
    )
    assert [s["sessionId"] for s in history.json()] == [session_id]

    messages = api.get(f"/agent/api/sessions/{session_id}/messages?limit=100", auth=service_key).json()
    assert [m["type"] for m in messages] == ["user", "agent"]
    assert messages[0]["userId"] == "user_123" and messages[1]["userId"] == "agent"
    assert messages[0]["metadata"]["source"] == "http"
    assert messages[1]["metadata"]["responseId"].startswith("resp_")
    assert set(messages[0]) == {
        "messageId", "sessionId", "businessId", "userId", "content", "type", "timestamp", "metadata"
    }  # fmt: skip

    one = api.get(f"/agent/api/sessions/{session_id}", auth=service_key).json()
    assert one == body


def test_no_active_session_is_null_so_the_client_sends_a_first_message(api, service_key):
    response = api.get("/agent/api/sessions/business/B1/user/nobody/active", auth=service_key)
    assert response.status_code == 200 and response.json() is None


def test_history_is_newest_first_and_limited(api, service_key):
    from tests.factories import SessionFactory

    contact = Contact.objects.create(business_id="B1", external_user_id="u1")
    with time_machine.travel("2025-10-01 09:00:00+00:00", tick=True) as clock:
        for _ in range(25):
            SessionFactory(contact=contact, business_id="B1", status=SessionStatus.CLOSED)
            clock.shift(60)
    default = api.get("/agent/api/sessions/business/B1/user/u1/history", auth=service_key).json()
    assert len(default) == 20
    created = [s["createdAt"] for s in default]
    assert created == sorted(created, reverse=True)
    assert {s["status"] for s in default} == {"closed"}
    for bad in ("0", "51", "ten"):
        response = api.get(f"/agent/api/sessions/business/B1/user/u1/history?limit={bad}", auth=service_key)
        assert response.status_code == 400
        assert "limit" in response.json()["error"]["fields"]


def test_message_limit_returns_the_latest_messages_oldest_first(api, service_key):
    from tests.factories import MessageFactory, SessionFactory

    session = SessionFactory(business_id="B1")
    with time_machine.travel("2025-10-01 09:00:00+00:00", tick=True) as clock:
        for n in range(60):
            MessageFactory(session=session, content=f"m{n}")
            clock.shift(1)
    default = api.get(f"/agent/api/sessions/{session.pk}/messages", auth=service_key).json()
    assert [m["content"] for m in default] == [f"m{n}" for n in range(10, 60)]
    assert (
        api.get(f"/agent/api/sessions/{session.pk}/messages?limit=101", auth=service_key).status_code == 400
    )


def test_our_other_statuses_map_onto_the_seeds_four(api, service_key):
    assert set(STATUS_001.values()) == {"active", "closed", "resolved", "abandoned"}
    from tests.factories import SessionFactory

    session = SessionFactory(business_id="B1", status=SessionStatus.ARCHIVED)
    assert api.get(f"/agent/api/sessions/{session.pk}", auth=service_key).json()["status"] == "closed"


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"businessId": None}, "businessId"),
        ({"userId": ""}, "userId"),
        ({"message": "x" * 10_001}, "message"),
        ({"message": 42, "userId": ["a"]}, "userId"),
        ({"sessionId": "not-a-uuid"}, "sessionId"),
        ({"businessId": "@users"}, "businessId"),
    ],
)
def test_bad_input_is_a_400_naming_the_field_and_stores_nothing(api, service_key, change, field):
    body = {"businessId": "B1", "userId": "u", "message": "hi", **change}
    body = {k: v for k, v in body.items() if v is not None}
    response = api.post("/agent/api/messages", body, auth=service_key)
    assert response.status_code == 400
    assert field in response.json()["error"]["fields"]
    assert not Message.objects.exists() and not Session.objects.exists()


def test_an_unknown_session_id_is_404_and_stores_nothing(api, service_key):
    body = {
        "businessId": "B1",
        "userId": "u",
        "message": "hi",
        "sessionId": "6f1d2c1e-0000-4000-8000-000000000000",
    }
    response = api.post("/agent/api/messages", body, auth=service_key)
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "session_not_found"
    assert not Message.objects.exists()


def test_a_user_with_a_jwt_speaks_only_as_themselves(api, alice_token):
    response = api.post(
        "/agent/api/messages", {"businessId": "B1", "userId": "mallory", "message": "hi"}, auth=alice_token
    )
    assert response.status_code == 403
    assert not Message.objects.exists()
