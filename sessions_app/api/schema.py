"""What the OpenAPI schema says beyond what drf-spectacular infers: the error answers of every operation
(here and nowhere else), nullable responses, and the links between operations (docs/api.md).

Error statuses come from what the view can answer, read off the view and its operation:

- 400: it takes a body or query parameters (a bad field, or malformed JSON);
- 401: it needs credentials (no, wrong, expired or revoked ones); the token views refuse a bad login;
- 403: an unsafe method under Django's session login (the CSRF check); permission refusals of one view
  are listed in EXTRA_ERRORS;
- 404: a path parameter (unknown or foreign ids, a value no route matches) or a `cursor` (a cursor that
  does not decode);
- 413: it takes a body (larger than DATA_UPLOAD_MAX_MEMORY_SIZE);
- 415: it takes a body (JSON only);
- 429: it has FailedAuthThrottle (every view: DEFAULT_THROTTLE_CLASSES), the lockout after failed
  authentications (the API-key and webhook authenticators check the same), with `Retry-After`.

What only one view's logic answers (409 conflicts, 410, a 404 or 403 of its own) is in EXTRA_ERRORS,
keyed by method and path as the schema spells them; a test checks every key names an operation.
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.openapi import AutoSchema
from drf_spectacular.plumbing import ResolvedComponent, force_instance, is_list_serializer, is_serializer
from rest_framework.authentication import SessionAuthentication
from rest_framework.permissions import SAFE_METHODS

ERROR = "Error"
ERROR_DETAIL = "ErrorDetail"
WEBHOOK_ERROR = "WebhookError"

ERROR_SCHEMAS: dict[str, dict[str, Any]] = {
    ERROR_DETAIL: {
        "type": "object",
        "properties": {
            "code": {
                "type": "string",
                "description": "Stable, machine-readable: `not_found`, `invalid`, `transition_refused`, ...",
            },
            "message": {"type": "string", "description": "One human sentence."},
            "fields": {
                "type": "object",
                "additionalProperties": {},
                "description": "400 validation errors only: field name → list of messages "
                "(nested for nested input).",
            },
        },
        "required": ["code", "message"],
    },
    ERROR: {
        "type": "object",
        "description": "The body of every non-2xx answer (docs/api.md, Errors).",
        "properties": {"error": {"$ref": f"#/components/schemas/{ERROR_DETAIL}"}},
        "required": ["error"],
    },
    WEBHOOK_ERROR: {
        "type": "object",
        "description": "Seed 000's webhook: the shared error, plus `success` (always false) and `message` "
        "(the error's message), which its client reads.",
        "properties": {
            "success": {"type": "boolean"},
            "message": {"type": "string"},
            "error": {"$ref": f"#/components/schemas/{ERROR_DETAIL}"},
        },
        "required": ["success", "message", "error"],
    },
}

DESCRIPTIONS = {
    400: "Not valid: `fields` names each bad field (`code` is `invalid` or the first field's error code); "
    "malformed JSON: `parse_error`.",
    401: "No credentials (`not_authenticated`), or wrong, expired or revoked ones "
    "(`authentication_failed`, `invalid_api_key`, `token_not_valid`). Each wrong one counts towards 429.",
    403: "`permission_denied`: the caller may not do this (a write without a CSRF token under Django's "
    "session login).",
    404: "`not_found`: no such resource among those the caller may see, or no such endpoint.",
    409: "Conflicts with the current state.",
    410: "Gone.",
    413: "`request_too_large`: the body is larger than the server accepts (DATA_UPLOAD_MAX_MEMORY_SIZE, "
    "2.5 MB by default).",
    415: "`unsupported_media_type`: send `Content-Type: application/json`.",
    429: "`throttled`: too many failed authentications from this address; every request from it is "
    "refused until `Retry-After` seconds have passed.",
}

EXTRA_ERRORS: dict[tuple[str, str], dict[int, str]] = {
    ("post", "/api/v1/auth/token/"): {401: "`no_active_account`: wrong username or password."},
    ("post", "/api/v1/auth/token/refresh/"): {401: "`token_not_valid`: the refresh token is not valid."},
    ("post", "/api/v1/sessions/"): {
        403: "`permission_denied`: a key limited to a business writes only there.",
        409: "`id_taken`: this `external_id` belongs to another contact's session.",
    },
    ("get", "/api/v1/sessions/active/"): {404: "`no_active_session`: the caller has no active session."},
    **{
        ("post", f"/api/v1/sessions/{{id}}/{name}/"): {
            409: "`transition_refused`: the session's status cannot move there."
        }
        for name in ("complete", "close", "resolve", "archive", "reopen")
    },
    ("post", "/api/v1/sessions/{id}/merge/"): {
        403: "`permission_denied`: only staff and API keys merge sessions.",
        409: "`already_merged`: one of the two sessions was merged before.",
    },
    ("post", "/api/v1/sessions/{id}/split/"): {
        403: "`permission_denied`: only staff and API keys split sessions.",
        409: "`already_merged`: the session was merged into another; it has no messages.",
    },
    ("post", "/api/v1/sessions/{session_id}/messages/"): {
        403: "`permission_denied`: only staff and API keys send outbound messages.",
        409: "`no_contact`: the session has no contact to speak for.",
    },
    ("delete", "/api/v1/contacts/{id}/"): {409: "`in_use`: sessions still refer to it."},
    ("get", "/api/v1/reports/summary/"): {
        400: "`invalid`: `fields` names the bad parameter (a date that is not YYYY-MM-DD, `since` after "
        "`until` or more than 731 days before it, an unknown channel, `group_by` or time zone)."
    },
    ("delete", "/api/v1/channels/{id}/"): {409: "`in_use`: sessions still refer to it."},
    ("get", "/api/v1/channels/{id}/window-report/"): {
        400: "`invalid`: `windows`, `since` or `until` cannot be used; `fields` names which and why.",
        403: "`permission_denied`: only staff read a channel's window report.",
    },
    ("post", "/webhook/sessions"): {
        404: "Not configured (`SESSIONS_WEBHOOK_*` unset), or `session_not_found`: no session with this "
        "`sessionId` for this user.",
        409: "`session_id_taken`: this `sessionId` belongs to another user.",
    },
    ("post", "/agent/api/messages"): {
        403: "`permission_denied`: a user sends only as themselves; a key limited to a business only there.",
        404: "`session_not_found`: `sessionId` names no session of this user in this business.",
    },
    **{
        ("get", f"/agent/api/sessions/business/{{business_id}}/user/{{user_id}}/{name}"): {
            403: "`permission_denied`: a user reads only as themselves; a key limited to a business, there."
        }
        for name in ("active", "history")
    },
    **{
        ("get", path): {403: "`permission_denied`: this endpoint acts for a logged-in user (JWT), not a key."}
        for path in (
            "/workspace/api/sessions/",
            "/workspace/api/sessions/active",
            "/workspace/api/sessions/{session_id}",
        )
    },
    ("put", "/workspace/api/sessions/{session_id}"): {
        # The seed's paths overlap: /sessions/active is the GET-only "active session" endpoint.
        405: "`method_not_allowed`: `active` in place of the id names GET /workspace/api/sessions/active.",
        409: "`transition_refused`: the session's status cannot move there.",
    },
    ("post", "/workspace/api/sessions/{session_id}/complete"): {
        409: "`transition_refused`: the session has already ended."
    },
    ("post", "/workspace/api/sessions/{session_id}/link-mission/{mission_id}"): {
        400: "`invalid`: `mission_id` is longer than 128 characters."
    },
    **{
        (method, path): {403: "`permission_denied`: characters are managed by staff only."}
        for method, path in (
            ("get", "/api/v1/characters/"),
            ("post", "/api/v1/characters/"),
            *((method, "/api/v1/characters/{config_id}/") for method in ("get", "put", "patch", "delete")),
        )
    },
    **{
        (method, path): {403: "`permission_denied`: event endpoints are managed by staff only."}
        for method, path in (
            ("get", "/api/v1/event-endpoints/"),
            ("post", "/api/v1/event-endpoints/"),
            *((method, "/api/v1/event-endpoints/{id}/") for method in ("get", "put", "patch", "delete")),
            ("post", "/api/v1/event-endpoints/{id}/rotate-secret/"),
            ("get", "/api/v1/event-endpoints/{id}/deliveries/"),
        )
    },
    ("get", "/workspace/api/sessions/{session_id}/messages"): {
        403: "`permission_denied`: this endpoint acts for a logged-in user (JWT), not a key."
    },
    ("post", "/agent/api/socket-token"): {
        403: "`permission_denied`: a service's API key mints socket tokens (not a user's login), and a "
        "key limited to a business mints them only there."
    },
    ("post", "/characters/api/chat"): {
        404: "`session_not_found`: unknown, or another user's session: open a new one.",
        409: "`session_character_mismatch`: the session belongs to another character.",
        410: "`session_ended`: the session has ended: open a new one.",
    },
}


class ApiSchema(AutoSchema):
    """DEFAULT_SCHEMA_CLASS: drf-spectacular's, plus the error answers and nullable responses."""

    def get_operation(self, path: str, path_regex: str, path_prefix: str, method: str, registry: Any) -> Any:
        operation = super().get_operation(path, path_regex, path_prefix, method, registry)
        if operation is None:
            return None
        for name, schema in ERROR_SCHEMAS.items():
            registry.register_on_missing(
                ResolvedComponent(name=name, type=ResolvedComponent.SCHEMA, schema=schema, object=name)
            )
        body = f"#/components/schemas/{WEBHOOK_ERROR if path.startswith('/webhook/') else ERROR}"
        responses = operation.setdefault("responses", {})
        for status, description in sorted(self.error_statuses(operation).items()):
            response: dict[str, Any] = {
                "description": description,
                "content": {"application/json": {"schema": {"$ref": body}}},
            }
            if status == 429:
                response["headers"] = {
                    "Retry-After": {"schema": {"type": "integer"}, "description": "Seconds to wait."}
                }
            responses.setdefault(str(status), response)
        return operation

    def error_statuses(self, operation: dict[str, Any]) -> dict[int, str]:
        parameters = operation.get("parameters", [])
        takes_body = "requestBody" in operation
        statuses: set[int] = set()
        if takes_body or any(p["in"] == "query" for p in parameters):
            statuses.add(400)
        if any(requirement for requirement in operation.get("security", [])):
            statuses.add(401)
        authenticators = self.view.get_authenticators()
        if self.method not in SAFE_METHODS and any(
            isinstance(a, SessionAuthentication) for a in authenticators
        ):
            statuses.add(403)
        if any(p["in"] == "path" or p["name"] == "cursor" for p in parameters):
            statuses.add(404)
        if takes_body:
            statuses.update((413, 415))
        if self.view.get_throttles():
            statuses.add(429)
        described = {status: DESCRIPTIONS[status] for status in statuses}
        described.update(EXTRA_ERRORS.get((self.method.lower(), self.path), {}))
        return described

    def _get_response_for_code(
        self, serializer: Any, status_code: str, media_types: Any = None, direction: Any = "response"
    ) -> Any:
        response = super()._get_response_for_code(serializer, status_code, media_types, direction)
        # `SomeSerializer(allow_null=True)` as a response: the body is that object or JSON null.
        instance = force_instance(getattr(serializer, "response", serializer))
        if is_serializer(instance) and not is_list_serializer(instance) and instance.allow_null:
            for media in response.get("content", {}).values():
                media["schema"] = {"allOf": [media["schema"]], "nullable": True}
        return response


# --- Links: how an answer's ids feed later calls (clients, and schemathesis's stateful tests) --------

_SESSION_ID = {"id": "$response.body#/id"}
_SESSION_TARGETS = {
    "GetSession": ("api_v1_sessions_retrieve", _SESSION_ID),
    "UpdateSession": ("api_v1_sessions_update", _SESSION_ID),
    "PatchSession": ("api_v1_sessions_partial_update", _SESSION_ID),
    "DeleteSession": ("api_v1_sessions_destroy", _SESSION_ID),
    "RecordActivity": ("api_v1_sessions_activity_create", _SESSION_ID),
    "LinkMission": ("api_v1_sessions_link_mission_create", _SESSION_ID),
    **{
        f"{name.title()}Session": (f"api_v1_sessions_{name}_create", _SESSION_ID)
        for name in ("complete", "close", "resolve", "archive", "reopen")
    },
    "ListMessages": ("api_v1_sessions_messages_list", {"session_id": "$response.body#/id"}),
    "SendMessage": ("api_v1_sessions_messages_create", {"session_id": "$response.body#/id"}),
}
_WORKSPACE_ID = {"session_id": "$response.body#/id"}
_WORKSPACE_TARGETS = {
    "GetUserSession": ("workspace_api_sessions_retrieve", _WORKSPACE_ID),
    "UpdateUserSession": ("workspace_api_sessions_update", _WORKSPACE_ID),
    "RecordUserActivity": ("workspace_api_sessions_activity_create", _WORKSPACE_ID),
    "CompleteUserSession": ("workspace_api_sessions_complete_create", _WORKSPACE_ID),
    "LinkUserMission": ("workspace_api_sessions_link_mission_create", _WORKSPACE_ID),
}
_AGENT_TARGETS = {
    "GetAgentSession": ("agent_api_sessions_retrieve", {"session_id": "$response.body#/sessionId"}),
    "ListAgentMessages": ("agent_api_sessions_messages_list", {"session_id": "$response.body#/sessionId"}),
}

# operationId → {status: {link name: (target operationId, parameters[, requestBody])}}
_FIRST_SESSION = {
    name: (target, {key: "$response.body#/results/0/id" for key in parameters})
    for name, (target, parameters) in _SESSION_TARGETS.items()
}

LINKS: dict[str, dict[str, dict[str, tuple[Any, ...]]]] = {
    "api_v1_sessions_list": {"200": _FIRST_SESSION},
    "api_v1_contacts_list": {
        "200": {
            "OpenSessionForContact": (
                "api_v1_sessions_create",
                {},
                {"contact": "$response.body#/results/0/id"},
            )
        }
    },
    "api_v1_sessions_create": {"200": _SESSION_TARGETS, "201": _SESSION_TARGETS},
    "api_v1_sessions_retrieve": {"200": _SESSION_TARGETS},
    **{
        f"api_v1_sessions_{name}_create": {"200": _SESSION_TARGETS}
        for name in ("complete", "close", "resolve", "archive", "reopen", "activity", "link_mission")
    },
    "api_v1_sessions_messages_create": {
        "201": {
            "ListSessionMessages": (
                "api_v1_sessions_messages_list",
                {"session_id": "$response.body#/session"},
            ),
            "GetMessageSession": ("api_v1_sessions_retrieve", {"id": "$response.body#/session"}),
        }
    },
    "api_v1_contacts_create": {
        "201": {
            name: (f"api_v1_contacts_{action}", {"id": "$response.body#/id"})
            for name, action in (
                ("GetContact", "retrieve"),
                ("UpdateContact", "update"),
                ("PatchContact", "partial_update"),
                ("DeleteContact", "destroy"),
            )
        }
    },
    "api_v1_channels_create": {
        "201": {
            name: (f"api_v1_channels_{action}", {"id": "$response.body#/id"})
            for name, action in (
                ("GetChannel", "retrieve"),
                ("UpdateChannel", "update"),
                ("PatchChannel", "partial_update"),
                ("DeleteChannel", "destroy"),
            )
        }
    },
    "api_v1_event_endpoints_create": {
        "201": {
            name: (f"api_v1_event_endpoints_{action}", {"id": "$response.body#/id"})
            for name, action in (
                ("GetEventEndpoint", "retrieve"),
                ("PatchEventEndpoint", "partial_update"),
                ("RotateEventEndpointSecret", "rotate_secret_create"),
                ("ListEventEndpointDeliveries", "deliveries_list"),
                ("DeleteEventEndpoint", "destroy"),
            )
        }
    },
    "workspace_api_sessions_create": {"201": _WORKSPACE_TARGETS},
    "workspace_api_sessions_retrieve": {"200": _WORKSPACE_TARGETS},
    "agent_api_messages_create": {"200": _AGENT_TARGETS, "202": _AGENT_TARGETS},
    "characters_api_sessions_create": {
        status: {
            "Chat": (
                "characters_api_chat_create",
                {},
                {"session_id": "$response.body#/session_id", "config_id": "$response.body#/config_id"},
            )
        }
        for status in ("200", "201")
    },
    "webhook_sessions_create": {
        status: {
            f"Webhook{method.title()}": (
                "webhook_sessions_create",
                {},
                {
                    "method": method,
                    "sessionId": "$response.body#/data/sessionId",
                    "phoneNumber": "$request.body#/phoneNumber",
                },
            )
            for method in ("get", "update", "delete")
        }
        for status in ("200", "201")
    },
}


def add_links(result: dict[str, Any], generator: Any, request: Any, public: bool) -> dict[str, Any]:
    """POSTPROCESSING_HOOKS: the LINKS above into the responses (an unknown operationId fails)."""
    operations = {
        op["operationId"]: op
        for item in result.get("paths", {}).values()
        for method, op in item.items()
        if isinstance(op, dict) and "operationId" in op
    }
    for source, by_status in LINKS.items():
        for status, links in by_status.items():
            response = operations[source]["responses"][status]
            for name, (target, parameters, *body) in links.items():
                if target not in operations:
                    raise KeyError(f"link {name} from {source}: no operation {target}")
                link: dict[str, Any] = {"operationId": target}
                if parameters:
                    link["parameters"] = parameters
                if body:
                    link["requestBody"] = body[0]
                response.setdefault("links", {})[name] = link
    return result
