"""Nobody reaches a session that is not theirs, through any endpoint."""

from __future__ import annotations

import pytest

from sessions_app.models import Contact, Message, Session, StatusChange
from tests.factories import MessageFactory, SessionFactory

pytestmark = pytest.mark.django_db

# (method, path template, body): every endpoint that takes a session id.
BY_ID = [
    ("get", "/api/v1/sessions/{id}/", None),
    ("put", "/api/v1/sessions/{id}/", {"title": "pwned"}),
    ("patch", "/api/v1/sessions/{id}/", {"title": "pwned"}),
    ("delete", "/api/v1/sessions/{id}/", None),
    ("post", "/api/v1/sessions/{id}/activity/", {}),
    ("post", "/api/v1/sessions/{id}/close/", {}),
    ("post", "/api/v1/sessions/{id}/complete/", {}),
    ("post", "/api/v1/sessions/{id}/resolve/", {}),
    ("post", "/api/v1/sessions/{id}/archive/", {}),
    ("post", "/api/v1/sessions/{id}/reopen/", {}),
    ("post", "/api/v1/sessions/{id}/link-mission/", {"mission_id": "m"}),
    ("get", "/api/v1/sessions/{id}/messages/", None),
    ("post", "/api/v1/sessions/{id}/messages/", {"content": "pwned"}),
    ("get", "/agent/api/sessions/{id}", None),
    ("get", "/agent/api/sessions/{id}/messages", None),
    ("get", "/workspace/api/sessions/{id}", None),
    ("put", "/workspace/api/sessions/{id}", {"name": "pwned", "status": "archived"}),
    ("post", "/workspace/api/sessions/{id}/link-mission/m1", None),
    ("post", "/workspace/api/sessions/{id}/activity", None),
    ("post", "/workspace/api/sessions/{id}/complete", None),
    ("post", "/characters/api/chat", {"session_id": "{id}", "config_id": "CHAR", "input": "pwned"}),
]


def _fill(body, sid):
    if body is None:
        return None
    return {k: (v.replace("{id}", sid) if isinstance(v, str) else v) for k, v in body.items()}


@pytest.fixture
def alices_session(alice):
    session = SessionFactory(owner=alice, agent_id="CHAR", business_id="B1", title="Alice's")
    MessageFactory(session=session, content="private")
    return session


def _unchanged(session):
    fresh = Session.objects.get(pk=session.pk)
    assert fresh.title == "Alice's" and fresh.status == "active" and fresh.mission_id == ""
    assert Message.objects.filter(session=session).count() == 1
    assert not StatusChange.objects.exists()
    assert Session.objects.count() == 1


@pytest.mark.parametrize(("method", "path", "body"), BY_ID)
def test_another_user_gets_404_and_changes_nothing(api, alices_session, bob_token, method, path, body):
    sid = str(alices_session.pk)
    response = api.request(method, path.format(id=sid), _fill(body, sid), auth=bob_token)
    assert response.status_code == 404, response.content
    assert "private" not in response.content.decode() and "Alice" not in response.content.decode()
    _unchanged(alices_session)


@pytest.mark.parametrize(("method", "path", "body"), BY_ID[:15])
def test_a_key_limited_to_another_business_gets_404(api, alices_session, method, path, body):
    from sessions_app.api.keys import issue_key

    key = issue_key("b2", business_id="B2")[1]
    sid = str(alices_session.pk)
    response = api.request(method, path.format(id=sid), _fill(body, sid), auth=key)
    assert response.status_code == 404, response.content
    _unchanged(alices_session)


def test_lists_show_only_the_callers_sessions(api, alices_session, bob, bob_token):
    bobs = SessionFactory(owner=bob)
    native = api.get("/api/v1/sessions/", auth=bob_token).json()["results"]
    assert [s["id"] for s in native] == [str(bobs.pk)]
    assert api.get("/api/v1/sessions/?q=private", auth=bob_token).json()["results"] == []
    assert api.get("/api/v1/sessions/active/", auth=bob_token).json()["id"] == str(bobs.pk)
    workspace = api.get("/workspace/api/sessions/", auth=bob_token).json()
    assert [s["id"] for s in workspace] == [str(bobs.pk)]
    assert api.get("/workspace/api/sessions/active", auth=bob_token).json()["id"] == str(bobs.pk)
    contacts = api.get("/api/v1/contacts/", auth=bob_token).json()["results"]
    assert [c["id"] for c in contacts] == [bobs.contact_id]


def test_the_agent_api_lets_a_user_read_only_as_themselves(api, alices_session, bob_token):
    Contact.objects.filter(pk=alices_session.contact_id).update(business_id="B1", external_user_id="alice")
    for path in ("active", "history"):
        response = api.get(f"/agent/api/sessions/business/B1/user/alice/{path}", auth=bob_token)
        assert response.status_code == 403
    own = api.get("/agent/api/sessions/business/B1/user/bob/history", auth=bob_token)
    assert own.status_code == 200 and own.json() == []


def test_a_business_limited_key_sees_and_writes_only_its_business(api, business_key, service_key):
    mine = SessionFactory(business_id="B1")
    theirs = SessionFactory(business_id="B2")
    listed = api.get("/api/v1/sessions/", auth=business_key).json()["results"]
    assert [s["id"] for s in listed] == [str(mine.pk)]
    assert api.get("/api/v1/sessions/?business_id=B2", auth=business_key).json()["results"] == []
    assert api.get(f"/api/v1/sessions/{theirs.pk}/", auth=business_key).status_code == 404
    contact = theirs.contact_id
    refused = api.post("/api/v1/sessions/", {"business_id": "B2", "contact": contact}, auth=business_key)
    assert refused.status_code == 403
    made = api.post("/api/v1/sessions/", {"contact": contact}, auth=business_key)
    assert made.status_code == 201 and made.json()["business_id"] == "B1"
    body = {"businessId": "B2", "userId": "u", "message": "hi"}
    assert api.post("/agent/api/messages", body, auth=business_key).status_code == 403
    assert api.get("/agent/api/sessions/business/B2/user/u/history", auth=business_key).status_code == 403
    # An unlimited key sees both businesses.
    assert len(api.get("/api/v1/sessions/", auth=service_key).json()["results"]) == 3
