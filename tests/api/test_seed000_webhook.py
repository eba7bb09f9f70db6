"""Seed 000's session webhook: Basic auth from the environment, `method` dispatch, `success` replies."""

from __future__ import annotations

import base64

import pytest

from sessions_app.models import Contact, Session
from tests.factories import MessageFactory

pytestmark = pytest.mark.django_db

USER = {"phoneNumber": "+31612345678", "name": "User Name", "companyName": "Company Name"}


@pytest.fixture
def webhook(settings):
    settings.SESSIONS_WEBHOOK_USERNAME = "app"
    settings.SESSIONS_WEBHOOK_PASSWORD = "s3cret-webhook-password"
    return "Basic " + base64.b64encode(b"app:s3cret-webhook-password").decode()


def call(api, auth, **body):
    return api.post("/webhook/sessions", {**USER, **body}, auth=auth)


def test_it_is_404_while_the_credentials_are_unset(api, settings):
    settings.SESSIONS_WEBHOOK_USERNAME = ""
    settings.SESSIONS_WEBHOOK_PASSWORD = ""
    response = call(api, "Basic " + base64.b64encode(b"a:b").decode(), method="list")
    assert response.status_code == 404


def test_it_rejects_wrong_credentials(api, webhook):
    wrong = "Basic " + base64.b64encode(b"app:wrong").decode()
    response = call(api, wrong, method="list")
    assert response.status_code == 401
    assert response.json()["success"] is False and response.json()["error"]["code"]
    assert call(api, None, method="list").status_code == 401
    assert not Contact.objects.exists()


def test_create_is_idempotent_for_the_same_user_and_refused_for_another(api, webhook):
    created = call(api, webhook, method="create", sessionId="session_1724567890123")
    assert created.status_code == 201
    body = created.json()
    assert body["success"] is True and body["message"] == "Session created successfully"
    assert set(body["data"]) == {"sessionId", "title", "description", "thumbnail"}
    assert body["data"]["sessionId"] == "session_1724567890123"
    assert body["data"]["thumbnail"].startswith("http://testserver/webhook/sessions/")
    assert body["data"]["title"]
    again = call(api, webhook, method="create", sessionId="session_1724567890123")
    assert again.status_code == 200 and again.json()["data"] == body["data"]
    stranger = api.post(
        "/webhook/sessions",
        {"method": "create", "sessionId": "session_1724567890123", "phoneNumber": "+31699999999",
         "name": "Other", "companyName": "X"},
        auth=webhook,
    )  # fmt: skip
    assert stranger.status_code == 409 and stranger.json()["success"] is False
    assert Session.objects.count() == 1
    contact = Contact.objects.get(phone="+31612345678")
    assert contact.display_name == "User Name" and contact.company == "Company Name"


def test_list_get_update_and_delete(api, webhook):
    call(api, webhook, method="create", sessionId="session_1")
    session = Session.objects.get(external_id="session_1")
    MessageFactory(session=session, content="I want to discuss the mobile app features")
    MessageFactory(session=session, content="Especially offline mode")
    listed = call(api, webhook, method="list").json()
    assert listed["success"] is True
    assert set(listed["data"][0]) == {
        "sessionId", "title", "description", "thumbnail", "createdAt", "lastActivity", "messageCount"
    }  # fmt: skip
    updated = call(api, webhook, method="update", sessionId="session_1", title="Mine", description="D")
    assert updated.json()["message"] == "Session updated successfully"
    data = updated.json()["data"]
    assert data["title"] == "I want to discuss the mobile app features"  # from the conversation
    assert "Especially offline mode" in data["description"]
    got = call(api, webhook, method="get", sessionId="session_1").json()["data"]
    assert got["title"] == data["title"] and got["createdAt"].endswith("Z")
    deleted = call(api, webhook, method="delete", sessionId="session_1")
    assert deleted.json() == {"success": True, "message": "Session deleted successfully"}
    assert not Session.objects.exists()
    missing = call(api, webhook, method="get", sessionId="session_1")
    assert missing.status_code == 404 and missing.json()["success"] is False


def test_another_users_session_is_invisible(api, webhook):
    call(api, webhook, method="create", sessionId="session_2")
    other = {"phoneNumber": "+31600000001", "name": "O", "companyName": "C"}
    for method in ("get", "update", "delete"):
        response = api.post(
            "/webhook/sessions", {**other, "method": method, "sessionId": "session_2"}, auth=webhook
        )
        assert response.status_code == 404, method
    listed = api.post("/webhook/sessions", {**other, "method": "list"}, auth=webhook).json()
    assert listed["data"] == []
    assert Session.objects.filter(external_id="session_2").exists()


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"method": "explode"}, "method"),
        ({"method": "create"}, "sessionId"),
        ({"method": "create", "sessionId": "abc"}, "sessionId"),
        ({"method": "list", "phoneNumber": "call me"}, "phoneNumber"),
        ({"method": "list", "name": "x" * 256}, "name"),
    ],
)
def test_bad_input_is_a_400_naming_the_field(api, webhook, body, field):
    response = api.post("/webhook/sessions", {**USER, **body}, auth=webhook)
    assert response.status_code == 400
    assert response.json()["success"] is False
    assert field in response.json()["error"]["fields"]
    assert not Session.objects.exists()


def test_malformed_json_is_a_400(api, webhook):
    response = api.client.post(
        "/webhook/sessions", data="{not json", content_type="application/json", HTTP_AUTHORIZATION=webhook
    )
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "parse_error"
