"""Each seed surface's own lifecycle (issue 20): thresholds per surface, through the one sweep.

002: abandoned after 24 h without activity, archived 7 days after it was abandoned; its auto-save
`PUT` counts as activity and `complete` works from abandoned. 001: abandoned after 30 minutes.
004: never abandoned for being quiet, and a `/chat` on an ended session reopens it.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
import time_machine
from django.utils import timezone

from sessions_app.ingest.channels import channel_for
from sessions_app.lifecycle.sweep import sweep_sessions
from sessions_app.lifecycle.transitions import transition_session
from sessions_app.models import Channel, ChannelKind, Session, SessionStatus, StatusChange, Surface
from tests.api.conftest import token_for

pytestmark = pytest.mark.django_db


def test_each_surface_has_its_own_channel_with_the_seeds_thresholds():
    thresholds = {
        c.surface: (c.kind, c.effective_abandon_after, c.effective_archive_after)
        for c in Channel.objects.exclude(surface="")
    }
    assert thresholds[Surface.WORKSPACE_API] == (ChannelKind.WEB, 24 * 3600, 7 * 24 * 3600)
    assert thresholds[Surface.AGENT_API][:2] == (ChannelKind.API, 30 * 60)
    assert thresholds[Surface.CHARACTERS_API][:2] == (ChannelKind.WEB, 0)
    assert Surface.SESSIONS_WEBHOOK in thresholds


def workspace_session(api, token) -> str:
    response = api.post("/workspace/api/sessions/", {}, auth=token)
    assert response.status_code == 201
    return response.json()["id"]


def test_a_workspace_is_abandoned_after_24_hours_and_archived_7_days_after_that(api, alice_token):
    start = timezone.now()
    with time_machine.travel(start, tick=False):
        sid = workspace_session(api, alice_token)
    with time_machine.travel(start + timedelta(hours=23), tick=False):
        assert sweep_sessions().abandoned == 0
    with time_machine.travel(start + timedelta(hours=24, minutes=1), tick=False):
        assert sweep_sessions().abandoned == 1
    assert Session.objects.get(pk=sid).status == SessionStatus.ABANDONED
    # Counted from when it was abandoned, not from its last activity.
    with time_machine.travel(start + timedelta(days=7, hours=23), tick=False):
        assert sweep_sessions().archived == 0
    with time_machine.travel(start + timedelta(days=8, hours=1), tick=False):
        assert sweep_sessions().archived == 1
    assert Session.objects.get(pk=sid).status == SessionStatus.ARCHIVED


def test_the_workspace_auto_save_put_counts_as_activity(api, alice_token):
    start = timezone.now()
    with time_machine.travel(start, tick=False):
        sid = workspace_session(api, alice_token)
    with time_machine.travel(start + timedelta(hours=20), tick=False):
        token = token_for(api, "alice")  # the first one has expired by now
        saved = api.put(f"/workspace/api/sessions/{sid}", {"session_metadata": {"view": "x"}}, auth=token)
        assert saved.status_code == 200
        assert saved.json()["last_activity_at"].startswith(
            (start + timedelta(hours=20)).strftime("%Y-%m-%dT%H")
        )
    with time_machine.travel(start + timedelta(hours=30), tick=False):
        assert sweep_sessions().abandoned == 0
    with time_machine.travel(start + timedelta(hours=44, minutes=1), tick=False):
        assert sweep_sessions().abandoned == 1


def test_complete_on_logout_works_once_the_workspace_was_abandoned(api, alice_token):
    sid = workspace_session(api, alice_token)
    transition_session(Session.objects.get(pk=sid), SessionStatus.ABANDONED, actor="system:sweep")
    response = api.post(f"/workspace/api/sessions/{sid}/complete", auth=alice_token)
    assert response.status_code == 200, response.content
    assert response.json()["status"] == "completed"


def test_an_agent_api_session_is_abandoned_after_30_minutes(api, service_key):
    start = timezone.now()
    with time_machine.travel(start, tick=False):
        body = {"businessId": "B1", "userId": "u1", "message": "hello"}
        sid = api.post("/agent/api/messages", body, auth=service_key).json()["sessionId"]
    assert Session.objects.get(pk=sid).channel == channel_for(ChannelKind.API, "", Surface.AGENT_API)
    with time_machine.travel(start + timedelta(minutes=29), tick=False):
        assert sweep_sessions().abandoned == 0
    with time_machine.travel(start + timedelta(minutes=31), tick=False):
        assert sweep_sessions().abandoned == 1


def character_session(api, token, config_id="CHAR_xxx") -> str:
    response = api.post("/characters/api/sessions", {"config_id": config_id}, auth=token)
    assert response.status_code in (200, 201)
    return response.json()["session_id"]


def test_a_character_session_is_never_abandoned_for_being_quiet(api, alice_token):
    start = timezone.now()
    with time_machine.travel(start, tick=False):
        sid = character_session(api, alice_token)
    with time_machine.travel(start + timedelta(days=60), tick=False):
        assert sweep_sessions().abandoned == 0
    assert Session.objects.get(pk=sid).status == SessionStatus.ACTIVE


@pytest.mark.parametrize("ended", [SessionStatus.ABANDONED, SessionStatus.CLOSED, SessionStatus.ARCHIVED])
def test_chat_on_an_ended_character_session_reopens_it_and_is_answered(api, alice_token, ended):
    sid = character_session(api, alice_token)
    transition_session(Session.objects.get(pk=sid), ended, actor="staff:test")
    response = api.post(
        "/characters/api/chat",
        {"session_id": sid, "config_id": "CHAR_xxx", "input": "still there?"},
        auth=alice_token,
    )
    assert response.status_code in (200, 202), response.content
    assert response.json()["session_id"] == sid
    session = Session.objects.get(pk=sid)
    assert session.status == SessionStatus.ACTIVE
    assert session.messages.filter(content="still there?").exists()
    reopened = StatusChange.objects.filter(session=session, to_status=SessionStatus.ACTIVE).get()
    assert reopened.from_status == ended and reopened.actor == "user:alice"
