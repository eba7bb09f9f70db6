"""Authentication: JWTs for users, hashed revocable API keys, Django login for staff, lockout."""

from __future__ import annotations

import io

import pytest
from django.core.management import call_command

from sessions_app.api.keys import issue_key, revoke_key
from sessions_app.models import ApiKey
from tests.api.conftest import PASSWORD
from tests.factories import SessionFactory

pytestmark = pytest.mark.django_db


def test_a_user_gets_and_refreshes_tokens(api, alice):
    tokens = api.post("/api/v1/auth/token/", {"username": "alice", "password": PASSWORD}).json()
    assert set(tokens) == {"access", "refresh"}
    assert api.get("/api/v1/sessions/", auth=tokens["access"]).status_code == 200
    refreshed = api.post("/api/v1/auth/token/refresh/", {"refresh": tokens["refresh"]})
    assert refreshed.status_code == 200 and refreshed.json()["access"]


def test_a_wrong_password_is_401_in_the_error_shape(api, alice):
    response = api.post("/api/v1/auth/token/", {"username": "alice", "password": "nope"})
    assert response.status_code == 401
    assert response.json()["error"]["message"]


def test_a_garbage_bearer_token_is_401(api):
    response = api.get("/api/v1/sessions/", auth="Bearer not.a.jwt")
    assert response.status_code == 401 and response.json()["error"]["code"]


def test_an_api_key_is_stored_hashed_and_stops_working_when_revoked(api):
    key, plain = issue_key("crm")
    assert plain.startswith("sk_") and plain not in key.key_hash
    # sk_<prefix>_<secret>: the secret is url-safe base64, which may itself hold "_" (splitting on the
    # last one took a fragment of a few characters, which a hex digest sometimes contains).
    secret = plain.split("_", 2)[2]
    assert len(secret) >= 40
    assert not ApiKey.objects.filter(key_hash__contains=secret).exists()
    assert api.get("/api/v1/sessions/", auth=plain).status_code == 200
    assert ApiKey.objects.get(pk=key.pk).last_used_at is not None
    revoke_key(key)
    response = api.get("/api/v1/sessions/", auth=plain)
    assert response.status_code == 401 and response.json()["error"]["code"] == "invalid_api_key"


def test_a_key_with_a_wrong_secret_is_refused(api):
    _, plain = issue_key("crm")
    assert api.get("/api/v1/sessions/", auth=plain[:-2] + "xx").status_code == 401


def test_create_api_key_prints_the_key_as_the_last_word(api):
    out = io.StringIO()
    call_command("create_api_key", "crm", "--business", "B1", stdout=out)
    plain = out.getvalue().split()[-1]
    key = ApiKey.objects.get()
    assert key.name == "crm" and key.business_id == "B1"
    assert plain.startswith(f"sk_{key.prefix}_")
    SessionFactory(business_id="B1")
    SessionFactory(business_id="B2")
    assert len(api.get("/api/v1/sessions/", auth=plain).json()["results"]) == 1


def test_staff_create_a_key_in_admin_and_see_it_once(client, staff):
    staff.is_superuser = True
    staff.save(update_fields=["is_superuser"])
    client.force_login(staff)
    response = client.post(
        "/admin/sessions_app/apikey/add/", {"name": "zapier", "business_id": ""}, follow=True
    )
    assert response.status_code == 200
    key = ApiKey.objects.get(name="zapier")
    shown = [str(m) for m in response.context["messages"] if "copy it now" in str(m)]
    assert len(shown) == 1 and f"sk_{key.prefix}_" in shown[0]


def test_staff_with_a_django_login_see_everything(client, staff, api):
    SessionFactory()
    client.force_login(staff)
    assert len(api.get("/api/v1/sessions/").json()["results"]) == 1


def test_repeated_failures_from_one_address_are_throttled_even_with_good_credentials(api, alice, settings):
    settings.AUTH_FAILURE_LIMIT = 3
    _, plain = issue_key("crm")
    for _ in range(3):
        assert api.get("/api/v1/sessions/", auth="sk_bad_guess").status_code == 401
    locked = api.get("/api/v1/sessions/", auth=plain)
    assert locked.status_code == 429
    assert locked.json()["error"]["code"] == "throttled" and locked.has_header("Retry-After")
    token = api.post("/api/v1/auth/token/", {"username": "alice", "password": PASSWORD})
    assert token.status_code == 429
    # Another address is not affected.
    assert api.get("/api/v1/sessions/", auth=plain, REMOTE_ADDR="10.0.0.9").status_code == 200


def test_wrong_passwords_at_the_token_endpoint_count_towards_the_lockout(api, alice, settings):
    settings.AUTH_FAILURE_LIMIT = 2
    for _ in range(2):
        api.post("/api/v1/auth/token/", {"username": "alice", "password": "guess"})
    assert api.post("/api/v1/auth/token/", {"username": "alice", "password": PASSWORD}).status_code == 429


def test_browser_clients_of_allowed_origins_pass_the_preflight(client, settings):
    settings.CORS_ALLOWED_ORIGINS = ["https://app.example.com"]
    preflight = client.options(
        "/characters/api/chat",
        HTTP_ORIGIN="https://app.example.com",
        HTTP_ACCESS_CONTROL_REQUEST_METHOD="POST",
        HTTP_ACCESS_CONTROL_REQUEST_HEADERS="authorization, content-type",
    )
    assert preflight.status_code == 200
    assert preflight["Access-Control-Allow-Origin"] == "https://app.example.com"
    assert "authorization" in preflight["Access-Control-Allow-Headers"]
    other = client.options(
        "/characters/api/chat", HTTP_ORIGIN="https://evil.example", HTTP_ACCESS_CONTROL_REQUEST_METHOD="POST"
    )
    assert "Access-Control-Allow-Origin" not in other
