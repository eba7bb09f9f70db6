"""One JSON error shape for every API response that is not a success (see docs/api.md):

    {"error": {"code": "not_found", "message": "No session with this id.", "fields": {...}}}

`fields` is present for validation errors: field name → list of messages (nested for nested input).
"""

from __future__ import annotations

from typing import Any

from django.core.exceptions import PermissionDenied, RequestDataTooBig
from django.db.models import ProtectedError
from django.http import Http404, HttpRequest, JsonResponse
from django.views.defaults import bad_request, page_not_found, server_error
from rest_framework import exceptions, status
from rest_framework.exceptions import ErrorDetail
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from sessions_app.api.throttling import record_failure
from sessions_app.lifecycle.boundaries import BoundaryRefused
from sessions_app.lifecycle.transitions import TransitionRefused


class Conflict(exceptions.APIException):
    status_code = status.HTTP_409_CONFLICT
    default_detail = "The request conflicts with the current state."
    default_code = "conflict"


class PayloadTooLarge(exceptions.APIException):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_detail = "The request body is larger than this server accepts."
    default_code = "request_too_large"


class Gone(exceptions.APIException):
    status_code = status.HTTP_410_GONE
    default_detail = "This no longer exists."
    default_code = "gone"


DEFAULT_CODES = {
    400: "invalid",
    401: "not_authenticated",
    403: "permission_denied",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    409: "conflict",
    410: "gone",
    413: "request_too_large",
    415: "unsupported_media_type",
    429: "throttled",
}


def _first_code(codes: Any) -> str | None:
    if isinstance(codes, str):
        return codes
    if isinstance(codes, list) and codes:
        return _first_code(codes[0])
    if isinstance(codes, dict) and codes:
        return _first_code(next(iter(codes.values())))
    return None


def error_body(status_code: int, code: str | None, message: str, fields: Any = None) -> dict[str, Any]:
    error: dict[str, Any] = {"code": code or DEFAULT_CODES.get(status_code, "error"), "message": message}
    if fields:
        error["fields"] = fields
    return {"error": error}


def _fields_message(fields: Any) -> str:
    if isinstance(fields, dict) and fields:
        name, problems = next(iter(fields.items()))
        text = problems[0] if isinstance(problems, list) and problems else problems
        if isinstance(text, dict):
            return f"{name}: {_fields_message(text)}"
        label = "Request" if name == "non_field_errors" else name
        return f"{label}: {text}"
    if isinstance(fields, list) and fields:
        return str(fields[0])
    return "The request is not valid."


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    if isinstance(exc, TransitionRefused):
        exc = Conflict(str(exc), code="transition_refused")
    elif isinstance(exc, BoundaryRefused):
        if exc.conflict:
            exc = Conflict(str(exc), code=exc.code)
        else:
            exc = exceptions.ValidationError(
                {exc.field or "non_field_errors": [ErrorDetail(str(exc), exc.code)]}
            )
    elif isinstance(exc, ProtectedError):
        exc = Conflict("Still in use by sessions; it cannot be deleted.", code="in_use")
    elif isinstance(exc, Http404):
        exc = exceptions.NotFound(str(exc) if str(exc) else "Not found.")
    elif isinstance(exc, PermissionDenied):
        exc = exceptions.PermissionDenied()
    elif isinstance(exc, RequestDataTooBig):
        # Django's own answer would be a bare HTML 400 (DATA_UPLOAD_MAX_MEMORY_SIZE, read by DRF's parser).
        exc = PayloadTooLarge()
    response = drf_exception_handler(exc, context)
    if response is None or not isinstance(exc, exceptions.APIException):
        return response
    if isinstance(exc, exceptions.NotAuthenticated | exceptions.AuthenticationFailed):
        request = context.get("request")
        # A request with no credentials at all is not a guess; only wrong credentials count.
        if request is not None and (
            isinstance(exc, exceptions.AuthenticationFailed) or request.META.get("HTTP_AUTHORIZATION")
        ):
            record_failure(request)
    detail = exc.detail
    if isinstance(exc, exceptions.ValidationError):
        fields = detail if isinstance(detail, dict) else {"non_field_errors": detail}
        code = _first_code(exc.get_codes())
        body = error_body(
            response.status_code,
            "invalid" if code in (None, "invalid") else code,
            _fields_message(fields),
            fields,
        )
    else:
        code = _first_code(exc.get_codes()) if not isinstance(detail, dict) else None
        if isinstance(detail, dict):  # simplejwt's token errors: {"detail", "code", "messages"}
            code = str(detail.get("code") or "")
            message = str(detail.get("detail") or exc.default_detail)
        else:
            message = str(detail)
        body = error_body(response.status_code, code, message)
    response.data = body
    return response


def json_error(request: HttpRequest, status_code: int, message: str) -> JsonResponse:
    return JsonResponse(error_body(status_code, None, message), status=status_code)


API_PREFIXES = ("/api/", "/agent/api/", "/workspace/api/", "/characters/api/", "/webhook/")


def handler404(request: HttpRequest, exception: Exception | None = None) -> Any:
    """JSON in the shared shape under the API prefixes; Django's page elsewhere."""
    if request.path.startswith(API_PREFIXES):
        return json_error(request, 404, "No such endpoint.")
    return page_not_found(request, exception or Http404())


def handler400(request: HttpRequest, exception: Exception | None = None) -> Any:
    """A request Django refuses before any view (a Host not in ALLOWED_HOSTS, a malformed body it
    read itself): JSON in the shared shape under the API prefixes; Django's page elsewhere."""
    if request.path.startswith(API_PREFIXES):
        return json_error(request, 400, "Bad request.")
    return bad_request(request, exception or Exception())


def handler500(request: HttpRequest) -> Any:
    if request.path.startswith(API_PREFIXES):
        return json_error(request, 500, "Internal error; it has been logged.")
    return server_error(request)
