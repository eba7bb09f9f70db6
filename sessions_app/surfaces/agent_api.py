"""Seed 001 (AI Agent Server session API) under /agent/api/: names and shapes only.

Messages go through the reuse rule (`ingest.record_inbound_message`); which session a message
joins is decided as docs/api-surfaces.md explains (the user's active session in that business).
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.http import HttpResponse
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers, status
from rest_framework.exceptions import PermissionDenied
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from sessions_app.api import scope
from sessions_app.api.serializers import MESSAGE_MAX_LENGTH, validate_metadata
from sessions_app.delivery.outbound import wait_for_reply
from sessions_app.ingest import chat
from sessions_app.lifecycle import sessions as session_ops
from sessions_app.models import Message, Role, Session, SessionStatus
from sessions_app.realtime.tokens import SOCKET_TOKEN_TTL, mint_socket_token
from sessions_app.surfaces.common import (
    SESSION_ID,
    as_uuid,
    iso_ms,
    json_null,
    limit_schema,
    parse_limit,
    parse_offset,
    visible_session_or_404,
)

# Our seven statuses onto the seed's four (docs/api-surfaces.md).
STATUS_001 = {
    SessionStatus.ACTIVE: "active",
    SessionStatus.CLOSED: "closed",
    SessionStatus.RESOLVED: "resolved",
    SessionStatus.ABANDONED: "abandoned",
    SessionStatus.COMPLETED: "closed",
    SessionStatus.ARCHIVED: "closed",
    SessionStatus.MERGED: "closed",
}
MESSAGE_TYPE = {Role.CONTACT: "user", Role.AGENT: "agent", Role.STAFF: "agent", Role.SYSTEM: "system"}


def _not_reserved(value: str) -> None:
    if value.startswith("@"):
        raise serializers.ValidationError("Must not start with '@' (reserved).")


class SendMessageSerializer(serializers.Serializer):
    businessId = serializers.CharField(max_length=128, validators=[_not_reserved])
    locationId = serializers.CharField(max_length=128, required=False, allow_blank=True, default="")
    userId = serializers.CharField(max_length=128)
    message = serializers.CharField(max_length=MESSAGE_MAX_LENGTH)
    businessType = serializers.CharField(max_length=64, required=False, allow_blank=True, default="")
    sessionId = serializers.UUIDField(required=False, allow_null=True, default=None)


class SendMessageResponseSerializer(serializers.Serializer):
    success = serializers.BooleanField()
    responseId = serializers.CharField(allow_null=True)
    message = serializers.CharField(allow_null=True, allow_blank=True)
    actions = serializers.ListField(child=serializers.DictField())
    timestamp = serializers.CharField()
    sessionId = serializers.CharField()
    pending = serializers.BooleanField(required=False, help_text="true: the reply was not ready in time.")


class UpdateSession001Serializer(serializers.Serializer):
    metadata = serializers.JSONField(  # type: ignore[assignment]  # the seed names it so
        required=False, validators=[validate_metadata], help_text="Merged key by key."
    )
    status = serializers.ChoiceField(choices=["closed", "resolved"], required=False)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if not attrs:
            raise serializers.ValidationError("Send metadata, status or both.")
        return attrs


class SessionMetadataSerializer(serializers.Serializer):
    # Any JSON: a string when it came with this API's messages, but /api/v1/ writes metadata freely.
    businessType = serializers.JSONField(help_text='The seed\'s business type ("" when none).')
    context = serializers.JSONField()  # type: ignore[assignment]  # the seed names it so


class Session001Serializer(serializers.Serializer):
    sessionId = serializers.CharField()
    businessId = serializers.CharField(allow_blank=True)
    locationId = serializers.CharField(allow_blank=True)
    userId = serializers.CharField(allow_blank=True)
    status = serializers.ChoiceField(choices=["active", "closed", "resolved", "abandoned"])
    createdAt = serializers.CharField()
    updatedAt = serializers.CharField()
    lastMessageAt = serializers.CharField()
    metadata = SessionMetadataSerializer()


class Message001Serializer(serializers.Serializer):
    messageId = serializers.CharField()
    sessionId = serializers.CharField()
    businessId = serializers.CharField(allow_blank=True)
    userId = serializers.CharField(allow_blank=True)
    content = serializers.CharField(allow_blank=True)
    type = serializers.ChoiceField(choices=["user", "agent", "system"])
    timestamp = serializers.CharField()
    metadata = serializers.DictField()


def session_001(session: Session) -> dict[str, Any]:
    metadata = dict(session.metadata or {})
    metadata.setdefault("businessType", "")
    metadata.setdefault("context", {})
    return {
        "sessionId": str(session.pk),
        "businessId": session.business_id,
        "locationId": session.location_id,
        "userId": session.contact.external_user_id if session.contact else "",
        "status": STATUS_001[SessionStatus(session.status)],
        "createdAt": iso_ms(session.created_at),
        "updatedAt": iso_ms(session.updated_at),
        "lastMessageAt": iso_ms(session.last_message_at or session.created_at),
        "metadata": metadata,
    }


def message_001(message: Message, session: Session) -> dict[str, Any]:
    metadata = dict(message.metadata or {})
    metadata.setdefault("source", "webhook" if message.provider else "http")
    if message.external_id:
        metadata.setdefault("externalId", message.external_id)
    from_contact = message.role == Role.CONTACT
    return {
        "messageId": f"msg_{message.pk}",
        "sessionId": str(session.pk),
        "businessId": session.business_id,
        "userId": (session.contact.external_user_id if session.contact else "") if from_contact else "agent",
        "content": message.content,
        "type": MESSAGE_TYPE.get(Role(message.role), "system"),
        "timestamp": iso_ms(message.created_at),
        "metadata": metadata,
    }


def _user_sessions(request: Request, business_id: str, user_id: str) -> Any:
    return scope.visible_sessions(request) & chat.chat_user_sessions(business_id, user_id)


def _check_speaks_for(request: Request, business_id: str, user_id: str) -> None:
    scope.check_business(request, business_id)
    user = scope.end_user(request)
    if user is not None and not scope.is_staff(request) and user_id != user.get_username():
        raise PermissionDenied("A user may only send and read as themselves (userId = their username).")


class MessagesView(APIView):
    @extend_schema(
        request=SendMessageSerializer,
        responses={200: SendMessageResponseSerializer, 202: SendMessageResponseSerializer},
        summary="Send a user's message; answers with the agent's reply",
    )
    def post(self, request: Request) -> Response:
        body = SendMessageSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        data = body.validated_data
        _check_speaks_for(request, data["businessId"], data["userId"])
        named = None
        if data["sessionId"] is not None:
            named = visible_session_or_404(
                request, str(data["sessionId"]), _user_sessions(request, data["businessId"], data["userId"])
            ).pk
        result = chat.record_chat_message(
            business_id=data["businessId"],
            user_id=data["userId"],
            text=data["message"],
            source="http",
            named_session_id=named,
            within=scope.visible_sessions(request),
            owner=scope.end_user(request),
            location_id=data["locationId"],
            business_type=data["businessType"],
        )
        reply = wait_for_reply(result.message.pk, settings.AGENT_REPLY_TIMEOUT)
        if reply is None:
            return Response(
                {
                    "success": True,
                    "responseId": None,
                    "message": None,
                    "actions": [],
                    "timestamp": iso_ms(result.message.created_at),
                    "sessionId": str(result.session.pk),
                    "pending": True,
                },
                status=status.HTTP_202_ACCEPTED,
            )
        return Response(
            {
                "success": True,
                "responseId": reply.metadata.get("responseId") or f"resp_{reply.pk}",
                "message": reply.content,
                "actions": reply.metadata.get("actions") or [],
                "timestamp": iso_ms(reply.created_at),
                "sessionId": str(result.session.pk),
            }
        )


class ActiveSessionView(APIView):
    @extend_schema(
        responses={200: Session001Serializer(allow_null=True)}, summary="The user's active session, or null"
    )
    def get(self, request: Request, business_id: str, user_id: str) -> HttpResponse:
        _check_speaks_for(request, business_id, user_id)
        session: Session | None = session_ops.newest_active_session(
            _user_sessions(request, business_id, user_id).select_related("contact")
        )
        return Response(session_001(session)) if session else json_null()


class HistoryView(APIView):
    @extend_schema(
        parameters=[
            OpenApiParameter("limit", limit_schema(50), description="1-50, default 20"),
            OpenApiParameter(
                "offset", {"type": "integer", "minimum": 0}, description="sessions to skip, default 0"
            ),
        ],
        responses={200: Session001Serializer(many=True)},
        summary="The user's sessions, newest first",
    )
    def get(self, request: Request, business_id: str, user_id: str) -> Response:
        limit = parse_limit(request.query_params.get("limit"), default=20, maximum=50)
        offset = parse_offset(request.query_params.get("offset"))
        _check_speaks_for(request, business_id, user_id)
        sessions = (
            _user_sessions(request, business_id, user_id)
            .select_related("contact")
            .order_by("-created_at", "-id")[offset : offset + limit]
        )
        return Response([session_001(s) for s in sessions])


class SessionMessagesView(APIView):
    @extend_schema(
        parameters=[
            SESSION_ID,
            OpenApiParameter("limit", limit_schema(100), description="1-100, default 50"),
        ],
        responses={200: Message001Serializer(many=True)},
        summary="A session's latest messages, oldest first",
    )
    def get(self, request: Request, session_id: str) -> Response:
        limit = parse_limit(request.query_params.get("limit"), default=50, maximum=100)
        session = visible_session_or_404(request, session_id)
        latest = list(session.messages.order_by("-created_at", "-id")[:limit])
        return Response([message_001(m, session) for m in reversed(latest)])


class SessionView(APIView):
    @extend_schema(parameters=[SESSION_ID], responses={200: Session001Serializer}, summary="One session")
    def get(self, request: Request, session_id: str) -> Response:
        return Response(session_001(visible_session_or_404(request, session_id)))

    @extend_schema(
        request=UpdateSession001Serializer,
        responses={200: Session001Serializer},
        summary="Save metadata (merged) and/or end the session (closed or resolved)",
    )
    def patch(self, request: Request, session_id: str) -> Response:
        session = visible_session_or_404(request, session_id)
        if session.contact is not None and session.contact.external_user_id:
            _check_speaks_for(request, session.business_id, session.contact.external_user_id)
        body = UpdateSession001Serializer(data=request.data)
        body.is_valid(raise_exception=True)
        data = body.validated_data
        updated = session_ops.edit_session(
            session,
            actor=scope.actor(request),
            to_status=data.get("status"),
            metadata=data.get("metadata"),
            activity=True,
        )
        return Response(session_001(updated))


class SocketTokenRequestSerializer(serializers.Serializer):
    businessId = serializers.CharField(max_length=128, validators=[_not_reserved])
    userId = serializers.CharField(max_length=128)


class SocketTokenSerializer(serializers.Serializer):
    token = serializers.CharField()
    expiresAt = serializers.CharField(help_text=f"ISO 8601: it connects until then ({SOCKET_TOKEN_TTL} s).")


class SocketTokenView(APIView):
    @extend_schema(
        request=SocketTokenRequestSerializer,
        responses={200: SocketTokenSerializer},
        summary="Mint a short-lived socket token for one user (API keys only; for browsers)",
    )
    def post(self, request: Request) -> Response:
        key = scope.api_key_of(request)
        if key is None:
            raise PermissionDenied("Socket tokens are minted with a service API key.")
        body = SocketTokenRequestSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        data = body.validated_data
        scope.check_business(request, data["businessId"])
        token, expires_at = mint_socket_token(key, data["businessId"], data["userId"])
        return Response({"token": token, "expiresAt": iso_ms(expires_at)})


__all__ = [
    "ActiveSessionView",
    "HistoryView",
    "MessagesView",
    "SessionMessagesView",
    "SessionView",
    "SocketTokenView",
    "as_uuid",
]
