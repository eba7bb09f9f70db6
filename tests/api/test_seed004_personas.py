"""Seed 004's characters (issue 20): a persona per `config_id` (admin and a staff-only API), whose
system prompt and model the agent answers with; each `POST /characters/api/sessions` opens a new
session and closes the user's previous active one with that character."""

from __future__ import annotations

import pytest

from sessions_app.models import Character, Session, SessionStatus, StatusChange
from tests.http_stub import Reply

COMPLETION = {
    "id": "chatcmpl-char",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "Arr."}, "finish_reason": "stop"}],
}


@pytest.fixture
def openai_agent(openai_agent, settings):
    settings.AGENT_MODEL = "default-model"
    settings.AGENT_SYSTEM_PROMPT = "Default prompt."
    openai_agent.default = Reply(body=COMPLETION)
    return openai_agent


def chat(api, token, config_id, text="Ahoy"):
    sid = api.post("/characters/api/sessions", {"config_id": config_id}, auth=token).json()["session_id"]
    response = api.post(
        "/characters/api/chat", {"session_id": sid, "config_id": config_id, "input": text}, auth=token
    )
    assert response.status_code == 200, response.content
    return response.json()


@pytest.mark.django_db(transaction=True)
def test_each_character_answers_with_its_own_prompt_and_model(api, alice, alice_token, openai_agent):
    Character.objects.create(
        config_id="CHAR_pirate", name="Pirate", system_prompt="You are a pirate.", model="m-p"
    )
    Character.objects.create(config_id="CHAR_monk", name="Monk", system_prompt="You are a calm monk.")
    chat(api, alice_token, "CHAR_pirate")
    chat(api, alice_token, "CHAR_monk")
    chat(api, alice_token, "CHAR_unknown")
    sent = [r.json() for r in openai_agent.requests]
    assert [s["messages"][0] for s in sent] == [
        {"role": "system", "content": "You are a pirate."},
        {"role": "system", "content": "You are a calm monk."},
        {"role": "system", "content": "Default prompt."},
    ]
    assert [s["model"] for s in sent] == ["m-p", "default-model", "default-model"]


@pytest.mark.django_db
def test_open_creates_a_new_session_each_time_and_closes_the_previous(api, alice_token, bob_token):
    first = api.post("/characters/api/sessions", {"config_id": "CHAR_a"}, auth=alice_token).json()
    other = api.post("/characters/api/sessions", {"config_id": "CHAR_b"}, auth=alice_token).json()
    bobs = api.post("/characters/api/sessions", {"config_id": "CHAR_a"}, auth=bob_token).json()
    second = api.post("/characters/api/sessions", {"config_id": "CHAR_a"}, auth=alice_token)
    assert second.status_code == 201 and second.json()["session_id"] != first["session_id"]
    assert Session.objects.get(pk=first["session_id"]).status == SessionStatus.CLOSED
    change = StatusChange.objects.get(session_id=first["session_id"])
    assert change.actor == "user:alice" and change.to_status == SessionStatus.CLOSED
    # The other character's and the other user's sessions are untouched.
    for kept in (other, bobs):
        assert Session.objects.get(pk=kept["session_id"]).status == SessionStatus.ACTIVE


@pytest.mark.django_db
def test_characters_api_is_staff_only_with_clear_errors(api, staff_token, alice_token, service_key):
    body = {"config_id": "CHAR_x", "name": "X", "system_prompt": "Be X."}
    assert api.post("/api/v1/characters/", body, auth=alice_token).status_code == 403
    assert api.post("/api/v1/characters/", body, auth=service_key).status_code == 403
    assert api.get("/api/v1/characters/").status_code == 401
    created = api.post("/api/v1/characters/", body, auth=staff_token)
    assert created.status_code == 201, created.content
    assert created.json()["config_id"] == "CHAR_x" and created.json()["model"] == ""
    listed = api.get("/api/v1/characters/", auth=staff_token).json()
    assert [c["config_id"] for c in listed] == ["CHAR_x"]
    patched = api.patch("/api/v1/characters/CHAR_x/", {"system_prompt": "Be Y."}, auth=staff_token)
    assert patched.status_code == 200 and Character.objects.get().system_prompt == "Be Y."
    taken = api.post("/api/v1/characters/", body, auth=staff_token)
    assert taken.status_code == 400 and "config_id" in taken.json()["error"]["fields"]
    bad = api.post("/api/v1/characters/", {"config_id": "bad id!"}, auth=staff_token)
    assert bad.status_code == 400
    assert {"config_id", "name", "system_prompt"} <= set(bad.json()["error"]["fields"])


@pytest.mark.django_db
def test_characters_are_managed_in_admin(admin_client):
    page = admin_client.get("/admin/sessions_app/character/add/")
    assert page.status_code == 200 and b"system_prompt" in page.content
