"""Seed 002 (workspace UserSession API) under /workspace/api/sessions: names and shapes only.

Every call acts for the logged-in user (JWT) and sees only that user's sessions.
"""

from __future__ import annotations

from typing import Any

from django.http import HttpResponse
from django.utils import timezone
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers, status
from rest_framework.exceptions import ValidationError
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from sessions_app.api import scope
from sessions_app.api.serializers import MetadataField
from sessions_app.ingest.channels import channel_for
from sessions_app.ingest.contacts import contact_for_user
from sessions_app.lifecycle import sessions as session_ops
from sessions_app.lifecycle.transitions import transition_session
from sessions_app.models import ChannelKind, Message, Role, Session, SessionStatus, Surface
from sessions_app.surfaces.common import (
    SESSION_ID,
    json_null,
    limit_schema,
    parse_limit,
    parse_offset,
    require_end_user,
    visible_session_or_404,
)

# Our seven statuses onto the seed's four; and back for PUT (docs/api-surfaces.md).
STATUS_002 = {
    SessionStatus.ACTIVE: "active",
    SessionStatus.COMPLETED: "completed",
    SessionStatus.ABANDONED: "abandoned",
    SessionStatus.ARCHIVED: "archived",
    SessionStatus.CLOSED: "completed",
    SessionStatus.RESOLVED: "completed",
    SessionStatus.MERGED: "completed",
}
FROM_002 = {
    "active": SessionStatus.ACTIVE,
    "completed": SessionStatus.COMPLETED,
    "abandoned": SessionStatus.ABANDONED,
    "archived": SessionStatus.ARCHIVED,
}


class UserSessionSerializer(serializers.Serializer):
    id = serializers.CharField()
    user_id = serializers.IntegerField(allow_null=True)
    name = serializers.CharField(allow_blank=True)
    status = serializers.ChoiceField(choices=list(FROM_002))
    chat_id = serializers.CharField()
    mission_id = serializers.CharField(allow_null=True)
    session_metadata = serializers.DictField()
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()
    last_activity_at = serializers.DateTimeField()


class CreateUserSessionSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=255, required=False, allow_blank=True, default="")
    session_metadata = MetadataField(required=False, default=dict)


class UpdateUserSessionSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=255, required=False, allow_blank=True)
    status = serializers.ChoiceField(choices=list(FROM_002), required=False)
    mission_id = serializers.CharField(max_length=128, required=False, allow_blank=True, allow_null=True)
    session_metadata = MetadataField(required=False, help_text="Merged key by key.")


# The seed's chat roles.
CHAT_ROLE = {Role.CONTACT: "user", Role.AGENT: "assistant", Role.STAFF: "assistant", Role.SYSTEM: "system"}
MESSAGES_DEFAULT = 50
MESSAGES_MAX = 100


class ChatMessageSerializer(serializers.Serializer):
    id = serializers.CharField()
    chat_id = serializers.CharField()
    role = serializers.ChoiceField(choices=["user", "assistant", "system"])
    content = serializers.CharField(allow_blank=True)
    created_at = serializers.DateTimeField()


class MessagePageSerializer(serializers.Serializer):
    messages = ChatMessageSerializer(many=True, help_text="Oldest first.")
    total = serializers.IntegerField()
    limit = serializers.IntegerField()
    offset = serializers.IntegerField(help_text="How many newer messages this page skipped.")
    next_offset = serializers.IntegerField(
        allow_null=True, help_text="The offset of older messages, or null."
    )


class RecoveredSessionSerializer(UserSessionSerializer):
    chat = MessagePageSerializer(help_text="The chat's newest messages (limit/offset page them).")
    mission = serializers.DictField(allow_null=True, help_text='{"id": mission_id} or null.')


def chat_message(message: Message) -> dict[str, Any]:
    return {
        "id": str(message.pk),
        "chat_id": str(message.session_id),
        "role": CHAT_ROLE.get(Role(message.role), "system"),
        "content": message.content,
        "created_at": message.created_at,
    }


def message_page(session: Session, limit: int, offset: int) -> dict[str, Any]:
    """The page of `limit` messages after skipping the `offset` newest, shown oldest first."""
    total = session.messages.count()
    newest_first = list(session.messages.order_by("-created_at", "-id")[offset : offset + limit])
    return {
        "messages": [chat_message(m) for m in reversed(newest_first)],
        "total": total,
        "limit": limit,
        "offset": offset,
        "next_offset": offset + limit if offset + limit < total else None,
    }


def page_params(request: Request) -> tuple[int, int]:
    limit = parse_limit(request.query_params.get("limit"), default=MESSAGES_DEFAULT, maximum=MESSAGES_MAX)
    return limit, parse_offset(request.query_params.get("offset"))


def recovered_session(session: Session, limit: int, offset: int) -> dict[str, Any]:
    """The seed's recovery answer: the session with its chat messages and its mission."""
    return {
        **user_session(session),
        "chat": message_page(session, limit, offset),
        "mission": {"id": session.mission_id} if session.mission_id else None,
    }


PAGE_PARAMETERS = [
    OpenApiParameter(
        "limit",
        limit_schema(MESSAGES_MAX),
        description=f"messages, 1-{MESSAGES_MAX}, default {MESSAGES_DEFAULT}",
    ),
    OpenApiParameter(
        "offset", {"type": "integer", "minimum": 0, "maximum": 100_000}, description="newest messages to skip"
    ),
]


def user_session(session: Session) -> dict[str, Any]:
    return {
        "id": str(session.pk),
        "user_id": session.owner_id,
        "name": session.title,
        "status": STATUS_002[SessionStatus(session.status)],
        # The seed's session has one chat; ours keeps the messages in the session itself.
        "chat_id": str(session.pk),
        "mission_id": session.mission_id or None,
        "session_metadata": session.metadata or {},
        "created_at": session.created_at,
        "updated_at": session.updated_at,
        "last_activity_at": session.last_activity_at,
    }


def _own(request: Request) -> Any:
    require_end_user(request)
    return scope.visible_sessions(request)


class SessionsView(APIView):
    @extend_schema(
        parameters=[OpenApiParameter("limit", limit_schema(100), description="1-100, default 50")],
        responses={200: UserSessionSerializer(many=True)},
        summary="The user's sessions, most recently active first",
    )
    def get(self, request: Request) -> Response:
        limit = parse_limit(request.query_params.get("limit"), default=50, maximum=100)
        sessions = _own(request).order_by("-last_activity_at", "-id")[:limit]
        return Response([user_session(s) for s in sessions])

    @extend_schema(
        request=CreateUserSessionSerializer,
        responses={201: UserSessionSerializer},
        summary="Create a session for the user",
    )
    def post(self, request: Request) -> Response:
        user = require_end_user(request)
        body = CreateUserSessionSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        name = body.validated_data["name"] or f"Session {timezone.now():%Y-%m-%d %H:%M}"
        session, _ = session_ops.create_session(
            channel_for(ChannelKind.WEB, "", Surface.WORKSPACE_API),
            contact_for_user(user),
            owner=user,
            title=name,
            metadata=body.validated_data["session_metadata"],
        )
        return Response(user_session(session), status=status.HTTP_201_CREATED)


class ActiveView(APIView):
    @extend_schema(
        parameters=PAGE_PARAMETERS,
        responses={200: RecoveredSessionSerializer(allow_null=True)},
        summary="The user's active session (marked active now) with its messages and mission, or null",
    )
    def get(self, request: Request) -> HttpResponse:
        limit, offset = page_params(request)
        session = session_ops.newest_active_session(_own(request))
        if session is None:
            return json_null()
        return Response(recovered_session(session_ops.touch_activity(session), limit, offset))


class SessionView(APIView):
    @extend_schema(
        parameters=[SESSION_ID, *PAGE_PARAMETERS],
        responses={200: RecoveredSessionSerializer},
        summary="One of the user's sessions, with its messages and mission",
    )
    def get(self, request: Request, session_id: str) -> Response:
        limit, offset = page_params(request)
        session = visible_session_or_404(request, session_id, _own(request))
        return Response(recovered_session(session, limit, offset))

    @extend_schema(
        parameters=[SESSION_ID],
        request=UpdateUserSessionSerializer,
        responses={200: UserSessionSerializer},
        summary="Update name, status, mission or metadata (merged)",
    )
    def put(self, request: Request, session_id: str) -> Response:
        session = visible_session_or_404(request, session_id, _own(request))
        body = UpdateUserSessionSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        data = body.validated_data
        fields: dict[str, Any] = {}
        if "name" in data:
            fields["title"] = data["name"]
        if "mission_id" in data:
            fields["mission_id"] = data["mission_id"] or ""
        updated = session_ops.edit_session(
            session,
            actor=scope.actor(request),
            to_status=FROM_002[data["status"]] if "status" in data else None,
            metadata=data.get("session_metadata"),
            activity=True,  # the seed's auto-save: the user is here
            **fields,
        )
        return Response(user_session(updated))


class MessagesView(APIView):
    @extend_schema(
        parameters=PAGE_PARAMETERS,
        responses={200: MessagePageSerializer},
        summary="Page through a session's chat messages, newest page first",
    )
    def get(self, request: Request, session_id: str) -> Response:
        limit, offset = page_params(request)
        session = visible_session_or_404(request, session_id, _own(request))
        return Response(message_page(session, limit, offset))


class LinkMissionView(APIView):
    @extend_schema(
        parameters=[SESSION_ID],
        request=None,
        responses={200: UserSessionSerializer},
        summary="Link a mission",
    )
    def post(self, request: Request, session_id: str, mission_id: str) -> Response:
        session = visible_session_or_404(request, session_id, _own(request))
        if len(mission_id) > 128:
            raise ValidationError({"mission_id": ["At most 128 characters."]})
        return Response(user_session(session_ops.link_mission(session, mission_id)))


class ActivityView(APIView):
    @extend_schema(
        parameters=[SESSION_ID],
        request=None,
        responses={200: UserSessionSerializer},
        summary="Record activity",
    )
    def post(self, request: Request, session_id: str) -> Response:
        session = visible_session_or_404(request, session_id, _own(request))
        return Response(user_session(session_ops.touch_activity(session)))


class CompleteView(APIView):
    @extend_schema(
        parameters=[SESSION_ID],
        request=None,
        responses={200: UserSessionSerializer},
        summary="Complete the session",
    )
    def post(self, request: Request, session_id: str) -> Response:
        session = visible_session_or_404(request, session_id, _own(request))
        updated = transition_session(session, SessionStatus.COMPLETED, actor=scope.actor(request))
        return Response(user_session(updated))
