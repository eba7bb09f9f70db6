"""Seed 004 (character chat) under /characters/api/: one session per (user, character) until it ends.

The seed's client keeps `session_id` in localStorage and, when the API says the session is invalid,
clears it and asks for a new one: an unknown or foreign id answers 404 `session_not_found`, an id of
another character 409 `session_character_mismatch`. An ended session is reopened by the next `/chat`
(the client never clears an id by itself); 004 sessions are never abandoned for being quiet.
"""

from __future__ import annotations

from django.conf import settings
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.exceptions import NotFound
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from sessions_app.api import scope
from sessions_app.api.errors import Conflict
from sessions_app.api.serializers import MESSAGE_MAX_LENGTH
from sessions_app.delivery.outbound import wait_for_reply
from sessions_app.ingest.channels import channel_for
from sessions_app.ingest.contacts import contact_for_user
from sessions_app.lifecycle import sessions as session_ops
from sessions_app.models import ChannelKind, Session, Surface
from sessions_app.surfaces.common import require_end_user, visible_session_or_404


class OpenSessionSerializer(serializers.Serializer):
    config_id = serializers.CharField(max_length=128)


class CharacterSessionSerializer(serializers.Serializer):
    session_id = serializers.CharField()
    config_id = serializers.CharField()
    user_id = serializers.CharField()
    session_status = serializers.CharField()
    updated_at = serializers.IntegerField(help_text="Unix seconds")


class ChatSerializer(serializers.Serializer):
    session_id = serializers.CharField(max_length=64)
    config_id = serializers.CharField(max_length=128)
    input = serializers.CharField(max_length=MESSAGE_MAX_LENGTH)


class ChatResponseSerializer(serializers.Serializer):
    ai = serializers.CharField(allow_blank=True)
    session_id = serializers.CharField()
    pending = serializers.BooleanField(required=False, help_text="true: the reply was not ready in time.")


def character_session(session: Session) -> dict[str, object]:
    return {
        "session_id": str(session.pk),
        "config_id": session.agent_id,
        "user_id": str(session.owner_id),
        "session_status": session.status,
        "updated_at": int(session.updated_at.timestamp()),
    }


class SessionsView(APIView):
    @extend_schema(
        request=OpenSessionSerializer,
        responses={200: CharacterSessionSerializer, 201: CharacterSessionSerializer},
        summary="A new session with this character (the previous active one is closed)",
    )
    def post(self, request: Request) -> Response:
        user = require_end_user(request)
        body = OpenSessionSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        session, created = session_ops.character_session(
            channel_for(ChannelKind.WEB, "", Surface.CHARACTERS_API),
            contact_for_user(user),
            user,
            body.validated_data["config_id"],
            actor=scope.actor(request),
        )
        return Response(character_session(session), status=201 if created else 200)


class ChatView(APIView):
    @extend_schema(
        request=ChatSerializer,
        responses={200: ChatResponseSerializer, 202: ChatResponseSerializer},
        summary="Send the user's input; answers with the character's reply",
    )
    def post(self, request: Request) -> Response:
        require_end_user(request)
        body = ChatSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        data = body.validated_data
        session = visible_session_or_404(request, data["session_id"], scope.visible_sessions(request))
        if session.agent_id != data["config_id"]:
            raise Conflict("This session belongs to another character.", code="session_character_mismatch")
        if session.contact is None:  # its contact was erased
            raise NotFound("No session with this id.", code="session_not_found")
        result = session_ops.record_character_message(session, data["input"], actor=scope.actor(request))
        reply = wait_for_reply(result.message.pk, settings.AGENT_REPLY_TIMEOUT)
        if reply is None:
            return Response(
                {"ai": "", "session_id": str(result.session.pk), "pending": True},
                status=status.HTTP_202_ACCEPTED,
            )
        return Response({"ai": reply.content, "session_id": str(result.session.pk)})
