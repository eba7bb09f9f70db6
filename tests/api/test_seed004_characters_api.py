"""Seed 004's getOrCreateSession / sendChatMessage with a user's JWT."""

from __future__ import annotations

import time

import pytest

from sessions_app.lifecycle.transitions import transition_session
from sessions_app.models import Message, Role, Session, SessionStatus


def open_session(api, token, config_id="CHAR_xxx"):
    return api.post("/characters/api/sessions", {"config_id": config_id}, auth=token)


@pytest.mark.django_db
def test_open_returns_the_seeds_fields_and_a_new_session_each_time(api, alice, alice_token, bob_token):
    response = open_session(api, alice_token)
    assert response.status_code == 201
    body = response.json()
    assert set(body) == {"session_id", "config_id", "user_id", "session_status", "updated_at"}
    assert body["config_id"] == "CHAR_xxx" and body["user_id"] == str(alice.pk)
    assert body["session_status"] == "active"
    assert isinstance(body["updated_at"], int) and abs(body["updated_at"] - time.time()) < 60
    again = open_session(api, alice_token)  # a new conversation every time, as upstream
    assert again.status_code == 201 and again.json()["session_id"] != body["session_id"]
    assert Session.objects.get(pk=body["session_id"]).status == SessionStatus.CLOSED
    other_character = open_session(api, alice_token, "CHAR_yyy").json()["session_id"]
    other_user = open_session(api, bob_token).json()["session_id"]
    assert len({body["session_id"], other_character, other_user}) == 3


@pytest.mark.django_db(transaction=True)
def test_chat_answers_with_the_characters_reply(api, alice_token):
    sid = open_session(api, alice_token).json()["session_id"]
    response = api.post(
        "/characters/api/chat", {"session_id": sid, "config_id": "CHAR_xxx", "input": "Hi!"}, auth=alice_token
    )
    assert response.status_code == 200, response.content
    assert response.json()["session_id"] == sid and response.json()["ai"]
    roles = list(Session.objects.get(pk=sid).messages.values_list("role", flat=True))
    assert roles == [Role.CONTACT, Role.AGENT]


@pytest.mark.django_db
def test_unknown_foreign_and_mismatched_sessions_get_distinct_errors_and_store_nothing(
    api, alice_token, bob_token
):
    sid = open_session(api, alice_token).json()["session_id"]

    def chat(session_id, token, config_id="CHAR_xxx"):
        return api.post(
            "/characters/api/chat",
            {"session_id": session_id, "config_id": config_id, "input": "hi"},
            auth=token,
        )

    unknown = chat("5b1a2c3d-0000-4000-8000-000000000000", alice_token)
    assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "session_not_found"
    assert chat("garbage", alice_token).status_code == 404
    foreign = chat(sid, bob_token)
    assert foreign.status_code == 404 and foreign.json()["error"]["code"] == "session_not_found"
    mismatch = chat(sid, alice_token, config_id="CHAR_yyy")
    assert mismatch.status_code == 409 and mismatch.json()["error"]["code"] == "session_character_mismatch"
    assert not Message.objects.exists()
    # An ended session is reopened by the next message (tests/api/test_surface_lifecycles.py).
    transition_session(Session.objects.get(pk=sid), SessionStatus.CLOSED, actor="test")
    assert chat(sid, alice_token).status_code in (200, 202)


@pytest.mark.django_db
def test_a_late_reply_answers_202_pending(api, alice_token, settings):
    settings.AGENT_REPLY_TIMEOUT = 0
    sid = open_session(api, alice_token).json()["session_id"]
    response = api.post(
        "/characters/api/chat", {"session_id": sid, "config_id": "CHAR_xxx", "input": "hi"}, auth=alice_token
    )
    assert response.status_code == 202
    assert response.json() == {"ai": "", "session_id": sid, "pending": True}


@pytest.mark.django_db
def test_missing_fields_are_named(api, alice_token):
    response = api.post("/characters/api/chat", {"input": "x" * 10_001}, auth=alice_token)
    assert response.status_code == 400
    assert set(response.json()["error"]["fields"]) == {"session_id", "config_id", "input"}
