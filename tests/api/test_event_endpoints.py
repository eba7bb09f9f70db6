"""/api/v1/event-endpoints/: staff only, the secret shown once, rotation, the delivery log."""

from __future__ import annotations

import base64

import pytest
from standardwebhooks.webhooks import Webhook

from sessions_app.delivery.outbound import record_outbound_message
from sessions_app.events import dispatch
from sessions_app.models import EventEndpoint, Role
from tests.event_receiver import running_receiver
from tests.factories import EventEndpointFactory, SessionFactory

pytestmark = pytest.mark.django_db

PATH = "/api/v1/event-endpoints/"


@pytest.fixture
def local(settings):
    """Local receivers: http and loopback allowed."""
    settings.DEBUG = True
    settings.EVENT_WEBHOOKS_ALLOW_PRIVATE = True
    dispatch.close_pool()
    yield
    dispatch.close_pool()


@pytest.fixture
def receiver(local):
    yield from running_receiver()


def test_staff_create_an_endpoint_and_get_its_secret_once(api, staff_token, receiver):
    endpoint = {"url": receiver.url, "event_types": ["message.created"], "description": "CRM"}
    response = api.post(PATH, endpoint, auth=staff_token)
    assert response.status_code == 201, response.content
    body = response.json()
    secret = body["secret"]
    assert secret.startswith("whsec_")
    assert len(base64.b64decode(secret.removeprefix("whsec_"))) >= 24
    assert EventEndpoint.objects.get().secret == secret
    shown = api.get(f"{PATH}{body['id']}/", auth=staff_token).json()
    assert "secret" not in shown
    assert shown["event_types"] == ["message.created"] and shown["enabled"] is True
    assert all("secret" not in item for item in api.get(PATH, auth=staff_token).json())

    # The secret verifies what is then delivered.
    receiver.secrets = [secret]
    record_outbound_message(SessionFactory(), "hi", role=Role.STAFF)
    dispatch.deliver_due(body["id"])
    (received,) = receiver.delivered()
    assert Webhook(secret).verify(received.body, received.headers)["type"] == "message.created"


@pytest.mark.parametrize("who", ["alice_token", "service_key"])
def test_anyone_but_staff_gets_403(api, request, who):
    auth = request.getfixturevalue(who)
    endpoint = EventEndpointFactory()
    for method, path in [
        ("get", PATH),
        ("post", PATH),
        ("get", f"{PATH}{endpoint.pk}/"),
        ("patch", f"{PATH}{endpoint.pk}/"),
        ("delete", f"{PATH}{endpoint.pk}/"),
        ("post", f"{PATH}{endpoint.pk}/rotate-secret/"),
        ("get", f"{PATH}{endpoint.pk}/deliveries/"),
    ]:
        response = api.request(method, path, {} if method in ("post", "patch") else None, auth=auth)
        assert response.status_code == 403, (method, path, response.content)
        assert response.json()["error"]["code"] == "permission_denied"
    assert EventEndpoint.objects.count() == 1


def test_no_credentials_get_401(api):
    assert api.get(PATH).status_code == 401


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("http://localhost:9000/hook", "loopback"),
        ("http://10.0.0.5/hook", "private"),
        ("http://169.254.169.254/", "link-local"),
        ("gopher://example.com/", "http"),
    ],
)
def test_registration_refuses_private_addresses_with_400_naming_the_problem(
    api, staff_token, settings, url, problem
):
    settings.DEBUG = True
    settings.EVENT_WEBHOOKS_ALLOW_PRIVATE = False
    response = api.post(PATH, {"url": url, "event_types": ["*"]}, auth=staff_token)
    assert response.status_code == 400, response.content
    assert problem in " ".join(response.json()["error"]["fields"]["url"])
    assert not EventEndpoint.objects.exists()


def test_registration_requires_https_when_debug_is_off(api, staff_token, settings):
    settings.DEBUG = False
    settings.EVENT_WEBHOOKS_ALLOW_PRIVATE = True
    response = api.post(PATH, {"url": "http://127.0.0.1:9/hook", "event_types": ["*"]}, auth=staff_token)
    assert response.status_code == 400
    assert "https" in response.json()["error"]["fields"]["url"][0]


def test_unknown_event_types_are_refused(api, staff_token, local):
    response = api.post(
        PATH, {"url": "http://127.0.0.1:9/", "event_types": ["message.deleted"]}, auth=staff_token
    )
    assert response.status_code == 400
    assert "event_types" in response.json()["error"]["fields"]
    response = api.post(PATH, {"url": "http://127.0.0.1:9/", "event_types": []}, auth=staff_token)
    assert response.status_code == 400


def test_rotate_issues_a_new_secret_and_keeps_the_old_one_for_a_day(api, staff_token):
    endpoint = EventEndpointFactory()
    old = endpoint.secret
    response = api.post(f"{PATH}{endpoint.pk}/rotate-secret/", auth=staff_token)
    assert response.status_code == 200
    body = response.json()
    endpoint.refresh_from_db()
    assert body["secret"] == endpoint.secret != old
    assert endpoint.signing_secrets() == [endpoint.secret, old]
    assert body["previous_secret_expires_at"]


def test_enabling_again_clears_the_failure(api, staff_token, local):
    endpoint = EventEndpointFactory(url="http://127.0.0.1:9/", enabled=False, disabled_reason="Disabled: 410")
    response = api.patch(f"{PATH}{endpoint.pk}/", {"enabled": True}, auth=staff_token)
    assert response.status_code == 200, response.content
    assert response.json()["disabled_reason"] == ""
    assert api.delete(f"{PATH}{endpoint.pk}/", auth=staff_token).status_code == 204


@pytest.mark.parametrize("size", [3, 12])
def test_the_delivery_log_lists_attempts_in_a_fixed_number_of_queries(
    api, staff_token, receiver, django_assert_num_queries, size
):
    endpoint = EventEndpointFactory(url=receiver.url, event_types=["message.created"])
    receiver.answer = lambda payload: 500 if payload["data"]["message"]["content"] == "m0" else 200
    session = SessionFactory()
    others = [SessionFactory() for _ in range(15)]
    record_outbound_message(session, "m0", role=Role.STAFF)
    for other in others:
        record_outbound_message(other, "ok", role=Role.STAFF)
    dispatch.deliver_due(endpoint.pk)
    with django_assert_num_queries(4):  # user, endpoint, page of deliveries with events, attempts
        response = api.get(f"{PATH}{endpoint.pk}/deliveries/?page_size={size}", auth=staff_token)
    assert response.status_code == 200, response.content
    results = response.json()["results"]
    assert len(results) == size
    oldest = api.get(f"{PATH}{endpoint.pk}/deliveries/?page_size=100", auth=staff_token).json()["results"][-1]
    assert oldest["state"] == "pending" and oldest["attempts"] == 1
    assert oldest["attempt_log"][0]["status_code"] == 500
    assert oldest["attempt_log"][0]["response"] == '{"ok": true}'
    assert oldest["payload"]["type"] == "message.created"
    assert oldest["payload"]["data"]["message"]["content"] == "m0"
    assert results[0]["state"] == "delivered"


def test_the_schema_documents_every_event_payload(api):
    schema = api.get("/api/schema/?format=json").json()
    components = schema["components"]["schemas"]
    for name in (
        "SessionOpenedPayload",
        "SessionStatusChangedPayload",
        "MessageCreatedPayload",
        "MessageStatusChangedPayload",
    ):
        assert name in components, name
    status_data = components["StatusChangedEventData"]["properties"]
    assert {"from", "to", "actor", "session", "sequence"} <= set(status_data)
    assert "/api/v1/event-endpoints/{id}/deliveries/" in schema["paths"]
