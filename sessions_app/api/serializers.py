"""Native API shapes. Serializers validate and render; services (`session_ops`, `ingest`,
`lifecycle`) decide."""

from __future__ import annotations

import copy
from typing import Any

from django.core.exceptions import ValidationError as DjangoValidationError
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers
from rest_framework.validators import UniqueValidator

# Re-exported: how a session and a message are shown lives apart (the event payloads use it too).
from sessions_app.api.representations import MessageSerializer as MessageSerializer
from sessions_app.api.representations import SessionContactSerializer as SessionContactSerializer
from sessions_app.api.representations import SessionSerializer as SessionSerializer
from sessions_app.lifecycle.sessions import METADATA_MAX_BYTES, check_metadata_size
from sessions_app.models import Channel, ChannelKind, Character, Contact, Direction

MESSAGE_MAX_LENGTH = 10_000


def validate_metadata(value: Any) -> None:
    if not isinstance(value, dict):
        raise serializers.ValidationError("Must be a JSON object.")
    try:
        check_metadata_size(value)
    except ValueError:
        raise serializers.ValidationError(f"Must be at most {METADATA_MAX_BYTES} bytes as JSON.") from None


def _has_nul(value: Any) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_has_nul(k) or _has_nul(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_has_nul(item) for item in value)
    return False


def validate_storable_json(value: Any) -> None:
    """PostgreSQL's jsonb cannot hold U+0000 (it was a 500: "unsupported Unicode escape sequence")."""
    if _has_nul(value):
        raise serializers.ValidationError("Must not contain NUL (U+0000) characters.", code="null_characters")


@extend_schema_field({"type": "object", "additionalProperties": {}})
class MetadataField(serializers.JSONField):
    """A JSON object of at most METADATA_MAX_BYTES (the schema says object: any other JSON is a 400)."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("validators", [validate_metadata])
        super().__init__(**kwargs)


class ContactSerializer(serializers.ModelSerializer):
    name = serializers.CharField(read_only=True)

    class Meta:
        model = Contact
        fields = [
            "id",
            "name",
            "phone",
            "whatsapp_id",
            "whatsapp_profile_name",
            "display_name",
            "company",
            "external_user_id",
            "business_id",
            "created_at",
            "updated_at",
        ]
        read_only_fields = ["id", "created_at", "updated_at"]


class ChannelSerializer(serializers.ModelSerializer):
    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        # The model's own rule (a reuse window no longer than abandon-after), which admin forms run
        # through `full_clean` and DRF does not: checked on the channel as it would be saved.
        if self.instance is None:
            channel = Channel(**attrs)
        else:  # a copy, changed: the saved row is not a clash with itself
            channel = copy.copy(self.instance)
            for name, value in attrs.items():
                setattr(channel, name, value)
        try:
            channel.clean()
            # Its unique (kind, address, surface) too: `surface` is not a field here, so DRF adds no
            # validator for it, and the database's refusal would be a 500.
            channel.validate_constraints()
        except DjangoValidationError as exc:
            raise serializers.ValidationError(exc.message_dict) from None
        return attrs

    class Meta:
        model = Channel
        fields = [
            "id",
            "kind",
            "address",
            "name",
            "reuse_window",
            "reopen_window",
            "abandon_after",
            "archive_after",
            "is_active",
            "created_at",
        ]
        read_only_fields = ["id", "created_at"]


class SessionCreateSerializer(serializers.Serializer):
    channel_kind = serializers.ChoiceField(
        choices=[ChannelKind.API, ChannelKind.WEB], default=ChannelKind.API, help_text="Chat surface kind."
    )
    contact = serializers.IntegerField(
        required=False,
        min_value=1,
        max_value=2**63 - 1,
        help_text="Staff and API keys: the contact; users: themselves.",
    )
    external_id = serializers.CharField(required=False, max_length=128, allow_blank=False)
    title = serializers.CharField(required=False, max_length=255, allow_blank=True, default="")
    description = serializers.CharField(required=False, max_length=2000, allow_blank=True, default="")
    business_id = serializers.CharField(required=False, max_length=128, allow_blank=True, default="")
    location_id = serializers.CharField(required=False, max_length=128, allow_blank=True, default="")
    agent_id = serializers.CharField(required=False, max_length=128, allow_blank=True, default="")
    mission_id = serializers.CharField(required=False, max_length=128, allow_blank=True, default="")
    metadata = MetadataField(required=False, default=dict)


class SessionUpdateSerializer(serializers.Serializer):
    title = serializers.CharField(required=False, max_length=255, allow_blank=True)
    description = serializers.CharField(required=False, max_length=2000, allow_blank=True)
    thumbnail_url = serializers.CharField(required=False, max_length=1000, allow_blank=True)
    location_id = serializers.CharField(required=False, max_length=128, allow_blank=True)
    agent_id = serializers.CharField(required=False, max_length=128, allow_blank=True)
    mission_id = serializers.CharField(required=False, max_length=128, allow_blank=True)
    metadata = MetadataField(required=False, help_text="Merged key by key into the stored metadata.")


class WindowCountSerializer(serializers.Serializer):
    seconds = serializers.IntegerField(help_text="The reuse window replayed.")
    sessions = serializers.IntegerField(
        help_text="Sessions it would have made of the period's inbound messages."
    )


class GapBucketSerializer(serializers.Serializer):
    upper_seconds = serializers.IntegerField(
        allow_null=True,
        help_text="Gaps up to this long (seconds, inclusive) and longer than the previous bucket's.",
    )
    count = serializers.IntegerField()


class WindowReportSerializer(serializers.Serializer):
    windows = WindowCountSerializer(many=True)
    gaps = GapBucketSerializer(many=True, help_text="Gaps between consecutive inbound messages per contact.")


class MergeSerializer(serializers.Serializer):
    into = serializers.UUIDField(
        help_text="The session this one's messages move into (same contact and channel)."
    )


class SplitSerializer(serializers.Serializer):
    message_id = serializers.IntegerField(
        min_value=1,
        max_value=2**63 - 1,
        help_text="The first message of the new session; it and every later message move there.",
    )


class LinkMissionSerializer(serializers.Serializer):
    mission_id = serializers.CharField(max_length=128)


class TransitionSerializer(serializers.Serializer):
    reason = serializers.CharField(required=False, max_length=255, allow_blank=True, default="")


class MessageCreateSerializer(serializers.Serializer):
    content = serializers.CharField(max_length=MESSAGE_MAX_LENGTH, allow_blank=False, trim_whitespace=False)
    direction = serializers.ChoiceField(
        choices=Direction.choices,
        default=Direction.INBOUND,
        help_text="inbound: from the contact (gets an agent reply). outbound: a staff reply (staff only).",
    )
    # Stored in the message's jsonb column (a session's metadata is stored encrypted, as text).
    metadata = MetadataField(
        required=False, default=dict, validators=[validate_metadata, validate_storable_json]
    )


class CharacterSerializer(serializers.ModelSerializer):
    config_id = serializers.RegexField(
        r"^[A-Za-z0-9_.:-]{1,128}$",
        max_length=128,
        error_messages={"invalid": "Letters, digits and _ . : - only, at most 128."},
        # Declared here, the field loses the model's unique check, and a taken id would be a 500.
        validators=[UniqueValidator(queryset=Character.objects.all(), message="A character has this id.")],
    )

    class Meta:
        model = Character
        fields = ["config_id", "name", "system_prompt", "model", "updated_at"]
        read_only_fields = ["updated_at"]
        extra_kwargs = {"model": {"required": False}}
