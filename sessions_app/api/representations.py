"""How the native API shows a session and a message: also the `data` of the event webhooks' payloads
(sessions_app/events/record.py), which is why these live apart from the serializers that validate
input (those import the lifecycle services, which record events)."""

from __future__ import annotations

from typing import Any

from rest_framework import serializers

from sessions_app.models import Contact, Message, Session


class SessionContactSerializer(serializers.ModelSerializer):
    name = serializers.CharField(read_only=True)

    class Meta:
        model = Contact
        fields = ["id", "name", "phone", "company", "external_user_id", "business_id"]


class SessionSerializer(serializers.ModelSerializer):
    contact = SessionContactSerializer(read_only=True, allow_null=True)
    owner: Any = serializers.PrimaryKeyRelatedField(read_only=True, allow_null=True)

    class Meta:
        model = Session
        fields = [
            "id",
            "external_id",
            "channel",
            "channel_kind",
            "contact",
            "business_id",
            "location_id",
            "owner",
            "agent_id",
            "title",
            "description",
            "thumbnail_url",
            "status",
            "merged_into",
            "metadata",
            "mission_id",
            "message_count",
            "first_message_at",
            "last_message_at",
            "last_activity_at",
            "status_changed_at",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields


class MessageSerializer(serializers.ModelSerializer):
    class Meta:
        model = Message
        fields = [
            "id",
            "session",
            "direction",
            "role",
            "content",
            "media",
            "metadata",
            "delivery_status",
            "in_reply_to",
            "reply_state",
            "created_at",
        ]
        read_only_fields = fields
