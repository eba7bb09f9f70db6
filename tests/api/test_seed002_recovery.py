"""Seed 002's recovery (issue 20): `GET /{id}` and `/active` give back the chat's messages (the newest
50 by default, paged) and the linked mission; `/{id}/messages` pages through all of them."""

from __future__ import annotations

import pytest
import time_machine
from django.utils import timezone

pytestmark = pytest.mark.django_db


def workspace_with_messages(api, token, count: int) -> str:
    sid = api.post("/workspace/api/sessions/", {"name": "Plan"}, auth=token).json()["id"]
    with time_machine.travel(timezone.now(), tick=False) as clock:  # the token stays valid
        for n in range(count):
            posted = api.post(f"/api/v1/sessions/{sid}/messages/", {"content": f"m{n}"}, auth=token)
            assert posted.status_code == 201, posted.content
            clock.shift(1)
    return sid


def test_recovery_by_id_and_active_returns_the_newest_50_messages_and_the_mission(api, alice_token):
    sid = workspace_with_messages(api, alice_token, 55)
    assert api.post(f"/workspace/api/sessions/{sid}/link-mission/M-7", auth=alice_token).status_code == 200
    for path in (f"/workspace/api/sessions/{sid}", "/workspace/api/sessions/active"):
        body = api.get(path, auth=alice_token).json()
        assert body["id"] == sid and body["mission_id"] == "M-7" and body["mission"] == {"id": "M-7"}
        chat = body["chat"]
        assert chat["total"] == 55 and chat["limit"] == 50 and chat["next_offset"] == 50
        assert [m["content"] for m in chat["messages"]] == [f"m{n}" for n in range(5, 55)]
        assert chat["messages"][0]["role"] == "user" and chat["messages"][0]["chat_id"] == body["chat_id"]


def test_the_messages_endpoint_pages_through_all_of_them(api, alice_token, bob_token):
    sid = workspace_with_messages(api, alice_token, 7)
    path = f"/workspace/api/sessions/{sid}/messages"
    seen: list[str] = []
    offset: int | None = 0
    while offset is not None:
        page = api.get(f"{path}?limit=3&offset={offset}", auth=alice_token).json()
        seen = [m["content"] for m in page["messages"]] + seen
        offset = page["next_offset"]
    assert seen == [f"m{n}" for n in range(7)]
    assert api.get(f"{path}?limit=0", auth=alice_token).status_code == 400
    assert "offset" in api.get(f"{path}?offset=no", auth=alice_token).json()["error"]["fields"]
    assert api.get(path, auth=bob_token).status_code == 404


def test_a_session_without_mission_or_messages_recovers_with_nulls(api, alice_token):
    sid = api.post("/workspace/api/sessions/", {}, auth=alice_token).json()["id"]
    body = api.get(f"/workspace/api/sessions/{sid}", auth=alice_token).json()
    assert body["mission"] is None and body["mission_id"] is None
    assert body["chat"] == {"messages": [], "total": 0, "limit": 50, "offset": 0, "next_offset": None}
