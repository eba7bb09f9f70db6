"""The OpenAPI schema: generated and validated without warnings, covering every endpoint, saying which
errors each operation answers (and the server answering them), and the server keeping to it under
schemathesis: every operation with generated requests, and sequences of calls that follow the schema's
links, as a staff user's JWT and as a service API key.

Schemathesis runs every check but two: `negative_data_rejection` (DRF takes `0` for a string or a
boolean, and an empty query parameter as no filter, on purpose) and `positive_data_acceptance` (rules
no schema can say: a contact that exists, a real phone number, a string that is blank once trimmed).
"""

from __future__ import annotations

import base64
import collections
import io
import json
import uuid
from typing import Any

import pytest
import schemathesis
from django.core.cache import cache
from django.core.management import call_command
from django.db import transaction
from django.test import Client
from hypothesis import HealthCheck
from hypothesis import settings as hypothesis_settings
from schemathesis.generation.stateful.state_machine import DEFAULT_STATE_MACHINE_SETTINGS

from config.wsgi import application
from sessions_app.api.keys import issue_key
from sessions_app.api.schema import EXTRA_ERRORS, LINKS
from sessions_app.ingest.channels import channel_for
from sessions_app.ingest.contacts import contact_for_user
from sessions_app.lifecycle import sessions as session_ops
from sessions_app.models import ChannelKind, Character, Contact, Session
from tests.api.conftest import token_for
from tests.factories import EventEndpointFactory
from tests.in_process import connection_kept_open

pytestmark = pytest.mark.django_db

# The issue's endpoints, spelled as its seeds spell them.
REQUIRED = {
    ("post", "/api/v1/auth/token/"),
    ("post", "/api/v1/auth/token/refresh/"),
    ("get", "/api/v1/sessions/"),
    ("post", "/api/v1/sessions/"),
    ("get", "/api/v1/sessions/{id}/"),
    ("put", "/api/v1/sessions/{id}/"),
    ("patch", "/api/v1/sessions/{id}/"),
    ("delete", "/api/v1/sessions/{id}/"),
    *{("post", f"/api/v1/sessions/{{id}}/{a}/") for a in
      ("activity", "complete", "close", "resolve", "archive", "reopen", "link-mission")},
    ("get", "/api/v1/sessions/active/"),
    ("get", "/api/v1/sessions/{session_id}/messages/"),
    ("post", "/api/v1/sessions/{session_id}/messages/"),
    ("get", "/api/v1/contacts/"),
    ("get", "/api/v1/channels/"),
    ("post", "/webhook/sessions"),
    ("post", "/agent/api/messages"),
    ("get", "/agent/api/sessions/business/{business_id}/user/{user_id}/active"),
    ("get", "/agent/api/sessions/business/{business_id}/user/{user_id}/history"),
    ("get", "/agent/api/sessions/{session_id}/messages"),
    ("get", "/agent/api/sessions/{session_id}"),
    ("post", "/workspace/api/sessions/"),
    ("get", "/workspace/api/sessions/"),
    ("get", "/workspace/api/sessions/active"),
    ("get", "/workspace/api/sessions/{session_id}"),
    ("put", "/workspace/api/sessions/{session_id}"),
    ("post", "/workspace/api/sessions/{session_id}/link-mission/{mission_id}"),
    ("post", "/workspace/api/sessions/{session_id}/activity"),
    ("post", "/workspace/api/sessions/{session_id}/complete"),
    ("post", "/characters/api/sessions"),
    ("post", "/characters/api/chat"),
}  # fmt: skip

WEBHOOK_BASIC = "Basic " + base64.b64encode(b"app:webhook-password").decode()
# Examples per operation and auth in the fuzzing phase (schemathesis adds its coverage-phase cases).
EXAMPLES = 5
SCENARIOS = 40
STEPS = 10


def generate_schema() -> dict:
    out = io.StringIO()
    # --fail-on-warn turns any warning (unresolvable type, naming collision, ...) into an error.
    call_command("spectacular", "--validate", "--fail-on-warn", "--format", "openapi-json", stdout=out)
    return json.loads(out.getvalue())


def operations_of(schema: dict) -> dict[tuple[str, str], dict]:
    return {
        (method, path): operation
        for path, item in schema["paths"].items()
        for method, operation in item.items()
        if method != "parameters"
    }


@pytest.fixture(autouse=True)
def _surfaces(settings):
    settings.AGENT_REPLY_TIMEOUT = 0
    settings.AUTH_FAILURE_LIMIT = 10_000  # generated wrong credentials must not lock the test out
    settings.SESSIONS_WEBHOOK_USERNAME = "app"
    settings.SESSIONS_WEBHOOK_PASSWORD = "webhook-password"


def test_the_schema_validates_without_warnings_and_has_every_endpoint(client):
    schema = generate_schema()
    assert operations_of(schema).keys() >= REQUIRED, sorted(REQUIRED - operations_of(schema).keys())
    served = client.get("/api/schema/?format=json")
    assert served.status_code == 200 and served.json()["paths"].keys() == schema["paths"].keys()


def test_the_docs_page_serves_its_assets_locally(client):
    page = client.get("/api/docs/")
    assert page.status_code == 200
    html = page.content.decode()
    assert "swagger-ui" in html and "cdn" not in html.lower() and "//unpkg" not in html


def test_errors_are_one_component_and_every_listed_one_names_an_operation():
    schema = generate_schema()
    operations = operations_of(schema)
    assert EXTRA_ERRORS.keys() <= operations.keys(), sorted(EXTRA_ERRORS.keys() - operations.keys())
    assert {"Error", "ErrorDetail", "WebhookError"} <= schema["components"]["schemas"].keys()
    for (method, path), operation in operations.items():
        errors = {int(status) for status in operation["responses"] if int(status) >= 400}
        assert errors >= {429}, (method, path)  # every view counts failed authentications
        for status in errors:
            body = operation["responses"][str(status)]["content"]["application/json"]["schema"]
            expected = "WebhookError" if path.startswith("/webhook/") else "Error"
            assert body == {"$ref": f"#/components/schemas/{expected}"}, (method, path, status)
        if operation.get("security"):
            assert 401 in errors, (method, path)
        if any(p["in"] == "path" for p in operation.get("parameters", [])):
            assert 404 in errors, (method, path)
        if "requestBody" in operation:
            assert {400, 413, 415} <= errors, (method, path)
    linked = {op["operationId"] for op in operations.values()}
    assert LINKS.keys() <= linked


def test_nullable_values_say_so():
    schema = generate_schema()
    session = schema["components"]["schemas"]["Session"]["properties"]
    for name in ("owner", "contact", "external_id", "first_message_at", "last_message_at"):
        assert session[name].get("nullable") is True, name
    for path in (
        "/agent/api/sessions/business/{business_id}/user/{user_id}/active",
        "/workspace/api/sessions/active",
    ):
        body = schema["paths"][path]["get"]["responses"]["200"]["content"]["application/json"]["schema"]
        assert body["nullable"] is True and "$ref" in body["allOf"][0], path


# --- Every generic error the schema lists, answered by the server ------------------------------------


def _fill(path: str, ids: dict[str, str]) -> str:
    for name, value in ids.items():
        path = path.replace("{" + name + "}", value)
    return path


def test_the_server_answers_every_error_status_the_schema_lists(api, staff, settings):
    """For each operation: the 400, 401, 403, 404, 413, 415 and 429 its schema lists, provoked for real."""
    schema = generate_schema()
    session, _ = session_ops.create_session(
        channel_for(ChannelKind.API, ""), contact_for_user(staff), owner=staff, title="Errors"
    )
    contact, channel = session.contact, session.channel
    assert contact is not None
    ids = {
        "id": str(session.pk),
        "session_id": str(session.pk),
        "mission_id": "m-1",
        "business_id": "b1",
        "user_id": staff.username,
        "config_id": Character.objects.create(
            config_id="CHAR_errors", name="E", system_prompt="E."
        ).config_id,
    }
    detail_ids = {
        "/api/v1/contacts/": str(contact.pk),
        "/api/v1/channels/": str(channel.pk),
        "/api/v1/event-endpoints/": str(EventEndpointFactory().pk),
    }
    token = token_for(api, "staffer")
    limited_key = issue_key("elsewhere", business_id="other")[1]
    csrf_client = Client(enforce_csrf_checks=True)
    csrf_client.force_login(staff)
    # Unknown ids; and a value with a slash, which no route matches (any string parameter can be one).
    unknown = {
        **ids,
        "id": str(uuid.uuid4()),
        "session_id": str(uuid.uuid4()),
        "business_id": "a/b",
        "config_id": "CHAR_unknown",
    }
    missing: list[tuple[str, str, int, int]] = []
    upload_limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE

    service_key = issue_key("service")[1]

    def auth_for(path: str) -> str:
        if path.startswith("/webhook/"):
            return WEBHOOK_BASIC
        # Socket tokens are minted by a service with its key, never by a user.
        return f"Bearer {service_key}" if path == "/agent/api/socket-token" else f"Bearer {token}"

    for (method, template), operation in operations_of(schema).items():
        path_ids = dict(ids)
        for prefix, pk in detail_ids.items():
            if template.startswith(prefix + "{id}"):
                path_ids["id"] = pk
        path = _fill(template, path_ids)
        listed = {int(status) for status in operation["responses"] if int(status) >= 400}
        body = {} if "requestBody" in operation else None
        answers: dict[int, Any] = {}
        if 400 in listed:
            if "requestBody" in operation:
                answers[400] = api.request(
                    method, path, HTTP_AUTHORIZATION=auth_for(path), **_raw("{", "application/json")
                )
            else:
                bounded = [p for p in operation["parameters"] if "minimum" in p.get("schema", {})]
                if bounded:
                    answers[400] = api.request(
                        method, f"{path}?{bounded[0]['name']}=0", HTTP_AUTHORIZATION=auth_for(path)
                    )
                elif template.endswith("{mission_id}"):
                    answers[400] = api.request(
                        method, _fill(template, {**ids, "mission_id": "m" * 129}), auth=auth_for(path)
                    )
        if 401 in listed:
            if template.startswith("/api/v1/auth/"):
                wrong = {"username": "staffer", "password": "wrong", "refresh": "not-a-token"}
                answers[401] = api.request(method, path, wrong)
            else:
                answers[401] = api.request(method, path, body)
        if 403 in listed and method not in ("get", "head", "options"):
            # Django's session login without a CSRF token.
            answers[403] = getattr(csrf_client, method)(path, data="{}", content_type="application/json")
        elif 403 in listed:
            # A key limited to another business: not a user (002), nor of business b1 (001).
            answers[403] = api.request(method, path, auth=f"Bearer {limited_key}")
        if 404 in listed:
            if "{" in template:
                answers[404] = api.request(method, _fill(template, unknown), body, auth=auth_for(path))
            elif any(p["name"] == "cursor" for p in operation.get("parameters", [])):
                answers[404] = api.request(method, f"{path}?cursor=garbage", auth=auth_for(path))
        if 413 in listed:
            settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 100
            answers[413] = api.request(method, path, {"padding": "x" * 200}, auth=auth_for(path))
            settings.DATA_UPLOAD_MAX_MEMORY_SIZE = upload_limit
        if 415 in listed:
            answers[415] = api.request(
                method, path, HTTP_AUTHORIZATION=auth_for(path), **_raw("x", "text/plain")
            )
        # What is left is one view's own logic (EXTRA_ERRORS), which the surfaces' own tests provoke.
        untried = listed - answers.keys() - {429}
        assert untried <= EXTRA_ERRORS.get((method, template), {}).keys(), (method, template, untried)
        for status, response in answers.items():
            if response.status_code != status or not _is_error_body(response):
                missing.append((method, template, status, response.status_code))
        if 429 in listed:
            settings.AUTH_FAILURE_LIMIT = 1
            cache.set("auth-failures:127.0.0.1", 1)
            response = api.request(method, path, body, auth=auth_for(path))
            if (
                response.status_code != 429
                or not _is_error_body(response)
                or not response.has_header("Retry-After")
            ):
                missing.append((method, template, 429, response.status_code))
            cache.clear()
            settings.AUTH_FAILURE_LIMIT = 10_000
    assert not missing, missing


def _is_error_body(response: Any) -> bool:
    if response["Content-Type"] != "application/json":
        return False
    error = response.json().get("error")
    return isinstance(error, dict) and isinstance(error.get("code"), str) and "message" in error


def _raw(body: str, content_type: str) -> dict[str, Any]:
    return {"data": body, "content_type": content_type}


def test_the_seeds_overlapping_paths_answer_what_the_schema_says(api, staff_token):
    """`active` in place of a session id is /workspace/api/sessions/active: GET only, so PUT is a 405."""
    response = api.put("/workspace/api/sessions/active", {"name": "x"}, auth=staff_token)
    assert response.status_code == 405 and response.json()["error"]["code"] == "method_not_allowed"
    assert (
        api.get("/api/v1/sessions/active/", auth=staff_token).json()["error"]["code"] == "no_active_session"
    )


def test_the_conflicts_listed_for_one_view_are_answered(api, staff, staff_token, service_key):
    """Two 409s of EXTRA_ERRORS no other test provokes: `id_taken` and `no_contact`."""
    channel = channel_for(ChannelKind.API, "")
    session_ops.create_session(channel, contact_for_user(staff), owner=staff, external_id="ext-1")
    other = Contact.objects.create(display_name="Someone else")
    taken = api.post("/api/v1/sessions/", {"contact": other.pk, "external_id": "ext-1"}, auth=service_key)
    assert taken.status_code == 409 and taken.json()["error"]["code"] == "id_taken"
    orphan = Session.objects.create(channel=channel, channel_kind=ChannelKind.API)
    said = api.post(f"/api/v1/sessions/{orphan.pk}/messages/", {"content": "hi"}, auth=staff_token)
    assert said.status_code == 409 and said.json()["error"]["code"] == "no_contact"


def test_seed_001_answers_metadata_as_stored(api, staff_token):
    """`businessType` is whatever the metadata holds: the native API may have written any JSON there."""
    session = api.post("/api/v1/sessions/", {"metadata": {"businessType": 5}}, auth=staff_token).json()
    answer = api.get(f"/agent/api/sessions/{session['id']}", auth=staff_token).json()
    assert answer["metadata"] == {"businessType": 5, "context": {}}
    schema = generate_schema()["components"]["schemas"]["SessionMetadata"]["properties"]
    assert "type" not in schema["businessType"] and "type" not in schema["context"]


def test_a_nul_character_in_message_metadata_is_a_400_not_a_500(api, staff, staff_token):
    """Found by the stateful tests: jsonb cannot store U+0000, and the message's metadata is jsonb."""
    session, _ = session_ops.create_session(channel_for(ChannelKind.API, ""), contact_for_user(staff))
    for metadata in ({"a\x00": 1}, {"a": ["b\x00"]}):
        response = api.post(
            f"/api/v1/sessions/{session.pk}/messages/",
            {"content": "hi", "direction": "outbound", "metadata": metadata},
            auth=staff_token,
        )
        assert response.status_code == 400, response.content
        assert response.json()["error"]["code"] == "null_characters"
    ok = api.post(f"/api/v1/sessions/{session.pk}/messages/", {"content": "hi"}, auth=staff_token)
    assert ok.status_code == 201


def test_a_host_django_refuses_is_a_400_in_the_error_shape(api, staff_token):
    """Found by the stateful tests (a generated `Host` header): it was Django's HTML 400."""
    response = api.get("/api/v1/sessions/", auth=staff_token, HTTP_HOST="-9V/")
    assert response.status_code == 400 and response["Content-Type"] == "application/json"
    assert response.json() == {"error": {"code": "invalid", "message": "Bad request."}}


# --- Schemathesis: generated requests against every operation, then sequences along the links ---------


@pytest.fixture(params=["staff_jwt", "service_key"])
def bearer(request, api, staff) -> str:
    if request.param == "staff_jwt":
        return f"Bearer {token_for(api, 'staffer')}"
    return f"Bearer {request.getfixturevalue('service_key')}"


@pytest.fixture
def api_schema(bearer, staff):
    # Failed authentications earlier tests left in the shared cache would throttle these calls (429).
    cache.clear()
    # Something to find for lists and the links from them: a contact with a session of the staff user.
    session_ops.create_session(
        channel_for(ChannelKind.API, ""), contact_for_user(staff), owner=staff, title="Seeded"
    )
    config = schemathesis.Config.from_dict(
        {
            "checks": {
                "positive_data_acceptance": {"enabled": False},
                "negative_data_rejection": {"enabled": False},
            },
        }
    )
    with connection_kept_open():
        schema = schemathesis.openapi.from_wsgi("/api/schema/?format=json", application, config=config)

        class Credentials:
            """The webhook takes its Basic login; every other surface the Bearer token under test."""

            def get(self, case: Any, ctx: Any) -> str:
                return bearer

            def set(self, case: Any, data: str, ctx: Any) -> None:
                login = WEBHOOK_BASIC if case.operation.path.startswith("/webhook/") else data
                case.headers = {**(case.headers or {}), "Authorization": login}

        schema.auth(refresh_interval=None)(Credentials)

        @schema.hook
        def filter_headers(context: Any, headers: dict[str, Any] | None) -> bool:
            # Host is the transport's: another site's name is refused before the API (the 400 above).
            return not any(name.lower() == "host" for name in headers or {})

        yield schema


lazy_schema = schemathesis.pytest.from_fixture("api_schema")


@lazy_schema.parametrize()
@hypothesis_settings(
    max_examples=EXAMPLES, deadline=None, database=None, suppress_health_check=list(HealthCheck)
)
def test_the_server_keeps_to_its_schema(case):
    case.call_and_validate()


def test_call_sequences_along_the_links_keep_to_the_schema(api_schema, bearer):
    followed: collections.Counter[str] = collections.Counter()

    if "sk_" in bearer:
        # A service key is refused every event-endpoint operation (staff only): sequences through
        # them would spend the scenarios on 403s (their links are walked with the staff login).
        api_schema = api_schema.exclude(path_regex="^/api/v1/event-endpoints/")
    # Only the operations the links join: each new endpoint elsewhere would otherwise thin out the
    # steps that follow a link (40 scenarios followed one once the boundary tools came).
    linked = {source for source in LINKS} | {
        target
        for by_status in LINKS.values()
        for links in by_status.values()
        for target, *_ in links.values()
    }

    class Sequences(api_schema.include(operation_id=sorted(linked)).as_state_machine()):  # type: ignore[misc]
        # Each scenario starts from the same database (a savepoint), so Hypothesis can replay it.
        def setup(self) -> None:
            self.savepoint = transaction.savepoint()

        def teardown(self) -> None:
            transaction.savepoint_rollback(self.savepoint)

        def step(self, input: Any) -> Any:
            output = super().step(input)
            if input.transition is not None and output.response.status_code < 300:
                followed[input.transition.id] += 1
            return output

    Sequences.run(
        settings=hypothesis_settings(
            DEFAULT_STATE_MACHINE_SETTINGS,
            max_examples=SCENARIOS,
            stateful_step_count=STEPS,
            database=None,
            derandomize=True,  # the same scenarios every run: the assertion below cannot be luck
        )
    )
    # Really sequences: calls that took an id from an earlier answer and were answered with a success.
    assert sum(followed.values()) >= 5 and len(followed) >= 3, followed


def test_a_body_over_the_upload_limit_is_a_413_in_the_error_shape(api, staff_token, settings):
    """DRF reads a JSON body through Django's `request.body`, which refuses one over
    DATA_UPLOAD_MAX_MEMORY_SIZE; that was Django's bare HTML 400, it is the API's 413 now."""
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    response = api.post("/api/v1/sessions/", {"title": "x" * 5000}, auth=staff_token)
    assert response.status_code == 413
    assert response.json()["error"] == {
        "code": "request_too_large",
        "message": "The request body is larger than this server accepts.",
    }
    assert api.post("/api/v1/sessions/", {"title": "small"}, auth=staff_token).status_code == 201
