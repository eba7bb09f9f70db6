"""Seed 002's SessionApiClient and its recovery flow (stored id → active → create) with a user's JWT."""

from __future__ import annotations

from datetime import timedelta

import pytest
import time_machine

from sessions_app.models import Session, SessionStatus, StatusChange
from sessions_app.surfaces.workspace_api import STATUS_002

pytestmark = pytest.mark.django_db

FIELDS = {
    "id", "user_id", "name", "status", "chat_id", "mission_id",
    "session_metadata", "created_at", "updated_at", "last_activity_at",
}  # fmt: skip


def recover(api, token, stored_id):
    """The seed's recoverSession(), step by step."""
    if stored_id:
        response = api.get(f"/workspace/api/sessions/{stored_id}", auth=token)
        if response.status_code == 200:
            return response.json()
    active = api.get("/workspace/api/sessions/active", auth=token)
    assert active.status_code == 200
    if active.json():
        return active.json()
    created = api.post("/workspace/api/sessions/", {}, auth=token)
    assert created.status_code == 201
    return created.json()


def test_create_answers_with_the_session_object(api, alice, alice_token):
    response = api.post(
        "/workspace/api/sessions/",
        {"name": "Planning", "session_metadata": {"view": "home"}},
        auth=alice_token,
    )
    assert response.status_code == 201
    body = response.json()
    assert set(body) == FIELDS
    assert body["name"] == "Planning" and body["status"] == "active" and body["user_id"] == alice.pk
    assert body["chat_id"] == body["id"] and body["mission_id"] is None
    assert body["session_metadata"] == {"view": "home"}
    assert Session.objects.get(pk=body["id"]).owner == alice


def test_the_recovery_flow_creates_then_finds_then_reuses_the_stored_id(api, alice_token):
    first = recover(api, alice_token, stored_id=None)
    assert recover(api, alice_token, stored_id=None)["id"] == first["id"]  # via /active
    assert recover(api, alice_token, stored_id=first["id"])["id"] == first["id"]  # via /{id}
    assert recover(api, alice_token, stored_id="no-such-id")["id"] == first["id"]
    assert Session.objects.count() == 1


def test_put_merges_metadata_renames_and_changes_status_through_the_lifecycle(api, alice_token):
    sid = api.post("/workspace/api/sessions/", {"session_metadata": {"a": 1}}, auth=alice_token).json()["id"]
    response = api.put(
        f"/workspace/api/sessions/{sid}",
        {"name": "Renamed", "session_metadata": {"b": 2}, "status": "archived"},
        auth=alice_token,
    )
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["session_metadata"] == {"a": 1, "b": 2}
    assert body["name"] == "Renamed" and body["status"] == "archived"
    assert StatusChange.objects.filter(session_id=sid, to_status=SessionStatus.ARCHIVED).exists()


def test_a_refused_status_change_writes_nothing(api, alice_token):
    sid = api.post("/workspace/api/sessions/", {}, auth=alice_token).json()["id"]
    assert api.post(f"/workspace/api/sessions/{sid}/complete", auth=alice_token).status_code == 200
    response = api.put(
        f"/workspace/api/sessions/{sid}", {"name": "New name", "status": "abandoned"}, auth=alice_token
    )
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "transition_refused"
    assert Session.objects.get(pk=sid).title != "New name"


def test_link_mission_activity_and_complete(api, alice_token):
    sid = api.post("/workspace/api/sessions/", {}, auth=alice_token).json()["id"]
    linked = api.post(f"/workspace/api/sessions/{sid}/link-mission/m-42", auth=alice_token)
    assert linked.status_code == 200 and linked.json()["mission_id"] == "m-42"
    before = Session.objects.get(pk=sid).last_activity_at
    with time_machine.travel(before + timedelta(minutes=3), tick=False):
        assert api.post(f"/workspace/api/sessions/{sid}/activity", auth=alice_token).status_code == 200
    assert Session.objects.get(pk=sid).last_activity_at == before + timedelta(minutes=3)
    done = api.post(f"/workspace/api/sessions/{sid}/complete", auth=alice_token)
    assert done.json()["status"] == "completed"
    assert api.get("/workspace/api/sessions/active", auth=alice_token).json() is None


def test_list_is_the_users_own_sessions(api, alice_token, bob_token):
    api.post("/workspace/api/sessions/", {"name": "A"}, auth=alice_token)
    api.post("/workspace/api/sessions/", {"name": "B"}, auth=bob_token)
    names = [s["name"] for s in api.get("/workspace/api/sessions/", auth=alice_token).json()]
    assert names == ["A"]


def test_statuses_are_the_seeds_four_in_lower_case(api, alice, alice_token):
    assert set(STATUS_002.values()) == {"active", "completed", "abandoned", "archived"}
    from tests.factories import SessionFactory

    SessionFactory(owner=alice, status=SessionStatus.RESOLVED)
    assert [s["status"] for s in api.get("/workspace/api/sessions/", auth=alice_token).json()] == [
        "completed"
    ]


def test_bad_input_names_the_field(api, alice_token):
    sid = api.post("/workspace/api/sessions/", {}, auth=alice_token).json()["id"]
    for body, field in [
        ({"status": "closed"}, "status"),
        ({"name": "x" * 256}, "name"),
        ({"session_metadata": [1, 2]}, "session_metadata"),
        ({"session_metadata": {"big": "x" * 20_000}}, "session_metadata"),
    ]:
        response = api.put(f"/workspace/api/sessions/{sid}", body, auth=alice_token)
        assert response.status_code == 400, body
        assert field in response.json()["error"]["fields"]


def test_api_keys_are_refused_because_the_surface_acts_for_a_user(api, service_key):
    response = api.get("/workspace/api/sessions/", auth=service_key)
    assert response.status_code == 403
