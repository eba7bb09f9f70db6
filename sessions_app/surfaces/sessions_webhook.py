"""Seed 000's session webhook, `POST /webhook/sessions`: one endpoint, `method` picks the action.

HTTP Basic with SESSIONS_WEBHOOK_USERNAME / SESSIONS_WEBHOOK_PASSWORD (404 while unset). The
caller is a trusted app backend that names its user by phone number, name and company; a session
belongs to that contact and is invisible to every other.
"""

from __future__ import annotations

import base64
import binascii
import hmac
from typing import Any

from django.conf import settings
from django.db.models import Count, Q
from drf_spectacular.utils import extend_schema
from rest_framework import authentication, exceptions, serializers, status
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from sessions_app.api.errors import Conflict, exception_handler
from sessions_app.api.throttling import refuse_if_locked_out
from sessions_app.ingest.channels import channel_for
from sessions_app.ingest.contacts import contact_for_person
from sessions_app.lifecycle import sessions as session_ops
from sessions_app.models import ChannelKind, Contact, Session, Surface
from sessions_app.phones import InvalidPhoneNumber, normalize_phone
from sessions_app.surfaces.common import as_uuid, iso_s
from sessions_app.surfaces.thumbnails import thumbnail_path

METHODS = ["create", "list", "update", "delete", "get"]
NEEDS_SESSION = {"create", "update", "delete", "get"}
LIST_LIMIT = 100


class WebhookPrincipal:
    is_authenticated = True
    is_anonymous = False
    is_staff = False
    pk = None

    def get_username(self) -> str:
        return "webhook:sessions"


class WebhookBasicAuthentication(authentication.BaseAuthentication):
    def authenticate(self, request: Any) -> tuple[WebhookPrincipal, None]:
        username, password = settings.SESSIONS_WEBHOOK_USERNAME, settings.SESSIONS_WEBHOOK_PASSWORD
        if not username or not password:
            raise exceptions.NotFound("No such endpoint.")
        refuse_if_locked_out(request)
        header = authentication.get_authorization_header(request).split()
        if len(header) != 2 or header[0].lower() != b"basic":
            raise exceptions.NotAuthenticated("HTTP Basic credentials are required.")
        try:
            given_user, _, given_password = base64.b64decode(header[1], validate=True).partition(b":")
        except (binascii.Error, ValueError):
            raise exceptions.AuthenticationFailed("Malformed Basic credentials.") from None
        user_ok = hmac.compare_digest(given_user, username.encode())
        password_ok = hmac.compare_digest(given_password, password.encode())
        if not (user_ok and password_ok):
            raise exceptions.AuthenticationFailed("Wrong username or password.")
        return WebhookPrincipal(), None

    def authenticate_header(self, request: Any) -> str:
        return 'Basic realm="sessions"'


class WebhookRequestSerializer(serializers.Serializer):
    method = serializers.ChoiceField(choices=METHODS)
    sessionId = serializers.RegexField(
        r"^session_[0-9]{1,20}$|^[0-9a-fA-F-]{36}$",
        required=False,
        max_length=64,
        error_messages={"invalid": "Must look like session_<milliseconds> (or a session's UUID)."},
    )
    phoneNumber = serializers.CharField(max_length=32)
    name = serializers.CharField(max_length=255, allow_blank=True)
    companyName = serializers.CharField(max_length=255, allow_blank=True)
    title = serializers.CharField(max_length=255, required=False, allow_blank=True)
    description = serializers.CharField(max_length=2000, required=False, allow_blank=True)

    def validate_phoneNumber(self, value: str) -> str:
        try:
            return normalize_phone(value)
        except InvalidPhoneNumber as exc:
            raise serializers.ValidationError(str(exc)) from None

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if attrs["method"] in NEEDS_SESSION and not attrs.get("sessionId"):
            raise serializers.ValidationError({"sessionId": [f"Required for method {attrs['method']!r}."]})
        return attrs


class WebhookSessionSerializer(serializers.Serializer):
    sessionId = serializers.CharField()
    title = serializers.CharField(allow_blank=True)
    description = serializers.CharField(allow_blank=True)
    thumbnail = serializers.CharField(allow_null=True)
    createdAt = serializers.CharField(required=False)
    lastActivity = serializers.CharField(required=False)
    messageCount = serializers.IntegerField(required=False)


class WebhookResponseSerializer(serializers.Serializer):
    success = serializers.BooleanField()
    message = serializers.CharField(required=False)
    data = serializers.JSONField(  # type: ignore[assignment]  # the seed names it so
        required=False, help_text="A session, a list of sessions, or absent."
    )


def _summary(session: Session, request: Request) -> dict[str, Any]:
    return {
        "sessionId": session.external_id or str(session.pk),
        "title": session.title,
        "description": session.description,
        "thumbnail": request.build_absolute_uri(thumbnail_path(session)),
    }


def _details(session: Session, request: Request) -> dict[str, Any]:
    """`messageCount` and `lastActivity` are the session's own messages' (and activity's): whichever
    surface stored them."""
    count = getattr(session, "stored_messages", None)
    return {
        **_summary(session, request),
        "createdAt": iso_s(session.created_at),
        "lastActivity": iso_s(session.last_activity_at),
        "messageCount": session.messages.count() if count is None else count,
    }


def _find(contact: Contact, session_id: str) -> Session:
    pk = as_uuid(session_id)
    match = Q(external_id=session_id) | Q(pk=pk) if pk else Q(external_id=session_id)
    session = Session.objects.filter(match, contact=contact).first()
    if session is None:
        raise exceptions.NotFound("No session with this sessionId for this user.", code="session_not_found")
    return session


def _webhook_exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    """The shared error shape, plus the `success` / `message` the seed's client reads."""
    response = exception_handler(exc, context)
    if response is not None and isinstance(response.data, dict) and "error" in response.data:
        response.data = {"success": False, "message": response.data["error"]["message"], **response.data}
    return response


class SessionsWebhookView(APIView):
    authentication_classes = [WebhookBasicAuthentication]
    permission_classes = [IsAuthenticated]

    def get_exception_handler(self) -> Any:
        return _webhook_exception_handler

    @extend_schema(
        request=WebhookRequestSerializer,
        responses={200: WebhookResponseSerializer, 201: WebhookResponseSerializer},
        summary="Seed 000: create | list | update | delete | get a user's sessions",
    )
    def post(self, request: Request) -> Response:
        body = WebhookRequestSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        data = body.validated_data
        contact = contact_for_person(data["phoneNumber"], data["name"], data["companyName"])
        method = data["method"]
        if method == "list":
            sessions = contact.sessions.annotate(stored_messages=Count("messages")).order_by(
                "-last_activity_at", "-id"
            )[:LIST_LIMIT]
            return Response({"success": True, "data": [_details(s, request) for s in sessions]})
        if method == "create":
            try:
                session, created = session_ops.open_summarized_session(
                    channel_for(ChannelKind.WEB, "", Surface.SESSIONS_WEBHOOK),
                    contact,
                    external_id=data["sessionId"],
                )
            except session_ops.SessionIdTaken:
                raise Conflict("This sessionId belongs to another user.", code="session_id_taken") from None
            return Response(
                {
                    "success": True,
                    "message": "Session created successfully",
                    "data": _summary(session, request),
                },
                status=status.HTTP_201_CREATED if created else status.HTTP_200_OK,
            )
        session = _find(contact, data["sessionId"])
        if method == "get":
            return Response({"success": True, "data": _details(session, request)})
        if method == "delete":
            session_ops.delete_session(session)
            return Response({"success": True, "message": "Session deleted successfully"})
        # The client's own title and description are not echoed: the backend writes them (the seed).
        session = session_ops.summarize_for_person(session, contact)
        return Response(
            {"success": True, "message": "Session updated successfully", "data": _summary(session, request)}
        )
