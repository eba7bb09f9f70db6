"""Seed 001 as its client uses it (issue 20): the debounced PATCH save, paged history, and the
business context (`businessType`, `locationId`) reaching the agent."""

from __future__ import annotations

import pytest
import time_machine

from sessions_app.models import Session, SessionStatus, StatusChange
from tests.api.test_seed001_agent_api import first_message
from tests.http_stub import Reply

COMPLETION = {
    "id": "chatcmpl-ctx",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "Sure."}, "finish_reason": "stop"}],
}


@pytest.mark.django_db(transaction=True)
def test_patch_saves_metadata_merged_and_counts_as_activity(api, service_key):
    with time_machine.travel("2025-10-12 10:00:00+00:00", tick=False) as clock:
        sid = first_message(api, service_key).json()["sessionId"]
        clock.shift(20 * 60)
        response = api.patch(
            f"/agent/api/sessions/{sid}", {"metadata": {"context": {"step": 2}}}, auth=service_key
        )
        assert response.status_code == 200, response.content
        body = response.json()
        assert body["metadata"]["businessType"] == "dental"  # kept: merged, not replaced
        assert body["metadata"]["context"] == {"step": 2}
        assert body["status"] == "active"
        assert Session.objects.get(pk=sid).last_activity_at.isoformat().startswith("2025-10-12T10:20")


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("to_status", ["closed", "resolved"])
def test_patch_ends_the_session_through_the_lifecycle(api, service_key, to_status):
    sid = first_message(api, service_key).json()["sessionId"]
    response = api.patch(f"/agent/api/sessions/{sid}", {"status": to_status}, auth=service_key)
    assert response.status_code == 200 and response.json()["status"] == to_status
    assert StatusChange.objects.get(session_id=sid).to_status == to_status
    assert Session.objects.get(pk=sid).status == SessionStatus(to_status)


@pytest.mark.django_db(transaction=True)
def test_patch_refuses_bad_input_and_other_users(api, service_key, alice_token):
    sid = first_message(api, service_key).json()["sessionId"]
    bad = api.patch(f"/agent/api/sessions/{sid}", {"status": "abandoned"}, auth=service_key)
    assert bad.status_code == 400 and "status" in bad.json()["error"]["fields"]
    empty = api.patch(f"/agent/api/sessions/{sid}", {}, auth=service_key)
    assert empty.status_code == 400
    not_object = api.patch(f"/agent/api/sessions/{sid}", {"metadata": [1]}, auth=service_key)
    assert not_object.status_code == 400 and "metadata" in not_object.json()["error"]["fields"]
    foreign = api.patch(f"/agent/api/sessions/{sid}", {"status": "closed"}, auth=alice_token)
    assert foreign.status_code == 404
    assert Session.objects.get(pk=sid).status == SessionStatus.ACTIVE


@pytest.mark.django_db(transaction=True)
def test_history_pages_past_its_first_50_with_offset(api, service_key):
    ids = []
    with time_machine.travel("2025-10-12 10:00:00+00:00", tick=False) as clock:
        for n in range(55):
            sid = first_message(api, service_key, text=f"hi {n}").json()["sessionId"]
            api.patch(f"/agent/api/sessions/{sid}", {"status": "closed"}, auth=service_key)
            ids.append(sid)
            clock.shift(60)
    path = "/agent/api/sessions/business/B0100001/user/user_123/history"
    first = api.get(f"{path}?limit=50", auth=service_key).json()
    rest = api.get(f"{path}?limit=50&offset=50", auth=service_key).json()
    assert [s["sessionId"] for s in first + rest] == list(reversed(ids))
    assert api.get(f"{path}?offset=-1", auth=service_key).status_code == 400
    assert "offset" in api.get(f"{path}?offset=x", auth=service_key).json()["error"]["fields"]


@pytest.mark.django_db(transaction=True)
def test_business_type_and_location_reach_the_agent(api, service_key, openai_agent):
    openai_agent.default = Reply(body=COMPLETION)
    response = first_message(api, service_key)
    assert response.status_code == 200, response.content
    sent = openai_agent.requests[0].json()["messages"]
    context = [m["content"] for m in sent if m["role"] == "system" and "Context" in m["content"]]
    assert len(context) == 1
    assert '"businessType": "dental"' in context[0] and '"locationId": "L0100001"' in context[0]
    assert '"businessId": "B0100001"' in context[0]
