"""The OpenAPI schema: generated without warnings, covering every endpoint, and the server keeps to it
(schemathesis sends generated requests to every operation: no 5xx, no response outside the schema)."""

from __future__ import annotations

import base64
import io
import json

import pytest
import schemathesis
from django.core.management import call_command
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import content_type_conformance, response_schema_conformance

from config.wsgi import application
from tests.api.conftest import token_for
from tests.in_process import connection_kept_open

pytestmark = pytest.mark.django_db

# The endpoints, spelled as its seeds spell them.
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


def generate_schema() -> dict:
    out = io.StringIO()
    # --fail-on-warn turns any warning (unresolvable type, naming collision, ...) into an error.
    call_command("spectacular", "--validate", "--fail-on-warn", "--format", "openapi-json", stdout=out)
    return json.loads(out.getvalue())


def test_the_schema_has_no_warnings_and_every_endpoint(client):
    schema = generate_schema()
    operations = {(m, p) for p, item in schema["paths"].items() for m in item if m != "parameters"}
    assert operations >= REQUIRED, sorted(REQUIRED - operations)
    served = client.get("/api/schema/?format=json")
    assert served.status_code == 200 and served.json()["paths"].keys() == schema["paths"].keys()


def test_the_docs_page_serves_its_assets_locally(client):
    page = client.get("/api/docs/")
    assert page.status_code == 200
    html = page.content.decode()
    assert "swagger-ui" in html and "cdn" not in html.lower() and "//unpkg" not in html


@pytest.mark.parametrize(
    "prefix", ["/api/v1/", "/agent/api/", "/workspace/api/", "/characters/api/", "/webhook/"]
)
def test_the_server_keeps_to_its_schema_under_generated_requests(api, alice, settings, prefix):
    settings.AGENT_REPLY_TIMEOUT = 0
    settings.AUTH_FAILURE_LIMIT = 10_000  # generated wrong passwords must not lock the test out
    settings.SESSIONS_WEBHOOK_USERNAME = "app"
    settings.SESSIONS_WEBHOOK_PASSWORD = "webhook-password"
    bearer = f"Bearer {token_for(api, 'alice')}"
    basic = "Basic " + base64.b64encode(b"app:webhook-password").decode()
    schema = schemathesis.from_dict(generate_schema(), app=application)
    operations = [result.ok() for result in schema.get_all_operations()]
    operations = [op for op in operations if op.path.startswith(prefix)]
    assert operations
    with connection_kept_open():
        for operation in operations:
            run_operation(operation, basic if operation.path.startswith("/webhook/") else bearer)


def run_operation(operation, auth: str) -> None:
    headers = {"Authorization": auth}

    @given(case=operation.as_strategy())
    @hypothesis_settings(
        max_examples=8, deadline=None, database=None, suppress_health_check=list(HealthCheck)
    )
    def check(case):
        response = case.call(headers=headers)
        case.validate_response(
            response, checks=(not_a_server_error, response_schema_conformance, content_type_conformance)
        )

    check()
