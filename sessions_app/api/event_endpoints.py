"""`/api/v1/event-endpoints/`: staff manage the subscribers of the event webhooks and read their
delivery log (docs/event-webhooks.md). Views validate and render; the rules live in sessions_app/events/."""

from __future__ import annotations

import json
from typing import Any

from django.db.models import Prefetch, QuerySet
from drf_spectacular.utils import PolymorphicProxySerializer, extend_schema, extend_schema_field
from rest_framework import permissions, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from sessions_app.api import scope
from sessions_app.api.pagination import StrictCursorPagination
from sessions_app.api.representations import MessageSerializer, SessionSerializer
from sessions_app.events.addresses import check_endpoint_url
from sessions_app.events.models import ALL_EVENTS, Delivery, DeliveryAttempt, EventEndpoint, EventType

# --- The payloads (documented here; written by sessions_app/events/record.py) --------------------------


class _EventData(serializers.Serializer):
    session = SessionSerializer(
        help_text="The session as GET /api/v1/sessions/{id}/ shows it, after the change."
    )
    sequence = serializers.IntegerField(
        help_text="Grows by exactly 1 with each event of this session (across all types)."
    )


class SessionEventData(_EventData):
    pass


class StatusChangedEventData(_EventData):
    from_ = serializers.CharField(help_text="The status before.")
    to = serializers.CharField(help_text="The status after.")
    actor = serializers.CharField(help_text='Who or what moved it, e.g. "staff:alice", "system:sweep".')

    def get_fields(self) -> dict[str, Any]:
        fields = super().get_fields()
        fields["from"] = fields.pop("from_")
        return fields


class MessageEventData(_EventData):
    message = MessageSerializer(help_text="The message as the messages endpoint shows it.")


def _payload(name: str, event_type: str, data: type[serializers.Serializer], doc: str) -> type:
    return type(
        name,
        (serializers.Serializer,),
        {
            "__doc__": doc,
            "type": serializers.ChoiceField(choices=[event_type]),
            "timestamp": serializers.DateTimeField(help_text="When the event happened."),
            "data": data(),
        },
    )


SessionOpenedPayload = _payload(
    "SessionOpenedPayload", EventType.SESSION_OPENED, SessionEventData, "`session.opened`: a session opened."
)
SessionStatusChangedPayload = _payload(
    "SessionStatusChangedPayload",
    EventType.SESSION_STATUS_CHANGED,
    StatusChangedEventData,
    "`session.status_changed`: a session's status changed.",
)
MessageCreatedPayload = _payload(
    "MessageCreatedPayload",
    EventType.MESSAGE_CREATED,
    MessageEventData,
    "`message.created`: a message was stored, inbound or outbound, any role.",
)
MessageStatusChangedPayload = _payload(
    "MessageStatusChangedPayload",
    EventType.MESSAGE_STATUS_CHANGED,
    MessageEventData,
    "`message.status_changed`: Twilio reported a new delivery status of an outbound message.",
)

EVENT_PAYLOAD = PolymorphicProxySerializer(
    component_name="EventPayload",
    serializers={
        EventType.SESSION_OPENED.value: SessionOpenedPayload,
        EventType.SESSION_STATUS_CHANGED.value: SessionStatusChangedPayload,
        EventType.MESSAGE_CREATED.value: MessageCreatedPayload,
        EventType.MESSAGE_STATUS_CHANGED.value: MessageStatusChangedPayload,
    },
    resource_type_field_name="type",
)


# --- Endpoints --------------------------------------------------------------------------------------


class EventEndpointSerializer(serializers.ModelSerializer):
    # Checked by check_endpoint_url alone, whose messages name the problem (scheme, host, address).
    url = serializers.CharField(
        max_length=2000, help_text="Where events are POSTed: https (http only with DEBUG), a public address."
    )
    event_types = serializers.ListField(
        child=serializers.ChoiceField(choices=[ALL_EVENTS, *EventType.values]),
        allow_empty=False,
        help_text='The event types to send, e.g. ["message.created"]; ["*"] for all.',
    )

    class Meta:
        model = EventEndpoint
        fields = [
            "id",
            "url",
            "description",
            "event_types",
            "enabled",
            "failing_since",
            "disabled_reason",
            "created_at",
            "updated_at",
        ]
        read_only_fields = ["id", "failing_since", "disabled_reason", "created_at", "updated_at"]

    def validate_url(self, value: str) -> str:
        try:
            check_endpoint_url(value)
        except ValueError as exc:
            raise serializers.ValidationError(str(exc)) from None
        return value

    def validate_event_types(self, value: list[str]) -> list[str]:
        return list(dict.fromkeys(value))

    def update(self, instance: EventEndpoint, validated_data: dict[str, Any]) -> EventEndpoint:
        if validated_data.get("enabled") and not instance.enabled:
            # Enabled again by staff: the failure that disabled it is forgotten.
            validated_data.update(failing_since=None, disabled_reason="")
        return super().update(instance, validated_data)


class EventEndpointCreatedSerializer(EventEndpointSerializer):
    secret = serializers.CharField(
        read_only=True, help_text="`whsec_…`: verifies the signatures. Shown this once; store it now."
    )

    class Meta(EventEndpointSerializer.Meta):
        fields = [*EventEndpointSerializer.Meta.fields, "secret"]


class RotatedSecretSerializer(serializers.Serializer):
    secret = serializers.CharField(help_text="The new secret, shown this once.")
    previous_secret_expires_at = serializers.DateTimeField(
        help_text="Until then deliveries carry a signature with the old secret too."
    )


class DeliveryAttemptSerializer(serializers.ModelSerializer):
    class Meta:
        model = DeliveryAttempt
        fields = ["attempted_at", "status_code", "duration_ms", "response", "error"]
        read_only_fields = fields


class DeliverySerializer(serializers.ModelSerializer):
    webhook_id = serializers.CharField(source="event.webhook_id", help_text="The `webhook-id` header.")
    type = serializers.ChoiceField(source="event.type", choices=EventType.choices)
    payload = serializers.SerializerMethodField(help_text="The body sent, as JSON.")
    attempt_log = DeliveryAttemptSerializer(many=True, read_only=True, help_text="Newest first.")

    class Meta:
        model = Delivery
        fields = [
            "id",
            "webhook_id",
            "type",
            "session_id",
            "sequence",
            "state",
            "attempts",
            "next_attempt_at",
            "delivered_at",
            "last_status_code",
            "last_error",
            "created_at",
            "payload",
            "attempt_log",
        ]
        read_only_fields = fields

    @extend_schema_field(EVENT_PAYLOAD)
    def get_payload(self, delivery: Delivery) -> Any:
        return json.loads(delivery.event.body)


class StaffOnly(permissions.BasePermission):
    message = "Only staff manage event endpoints."

    def has_permission(self, request: Any, view: Any) -> bool:
        return bool(request.user and request.user.is_authenticated) and scope.is_staff(request)


class DeliveryPagination(StrictCursorPagination):
    ordering = "-id"


class EventEndpointViewSet(viewsets.ModelViewSet):
    """Subscribers of the event webhooks: staff only."""

    serializer_class = EventEndpointSerializer
    permission_classes = [StaffOnly]
    pagination_class = None
    queryset = EventEndpoint.objects.order_by("id")

    @extend_schema(request=EventEndpointSerializer, responses={201: EventEndpointCreatedSerializer})
    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        body = self.get_serializer(data=request.data)
        body.is_valid(raise_exception=True)
        endpoint = body.save()
        return Response(EventEndpointCreatedSerializer(endpoint).data, status=status.HTTP_201_CREATED)

    @extend_schema(request=None, responses=RotatedSecretSerializer, summary="Issue a new secret")
    @action(detail=True, methods=["post"], url_path="rotate-secret")
    def rotate_secret(self, request: Request, pk: str | None = None) -> Response:
        endpoint = self.get_object()
        secret = endpoint.rotate_secret()
        return Response(
            RotatedSecretSerializer(
                {"secret": secret, "previous_secret_expires_at": endpoint.previous_secret_expires_at}
            ).data
        )

    @extend_schema(responses=DeliverySerializer(many=True), summary="The endpoint's delivery log")
    @action(detail=True, methods=["get"], pagination_class=DeliveryPagination)
    def deliveries(self, request: Request, pk: str | None = None) -> Response:
        endpoint = self.get_object()
        rows = self.deliveries_of(endpoint)
        page = self.paginate_queryset(rows)
        assert page is not None
        return self.get_paginated_response(DeliverySerializer(page, many=True).data)

    def deliveries_of(self, endpoint: EventEndpoint) -> QuerySet[Delivery]:
        return (
            Delivery.objects.filter(endpoint=endpoint)
            .select_related("event")
            .prefetch_related(
                Prefetch("attempt_log", queryset=DeliveryAttempt.objects.order_by("-attempted_at", "-id"))
            )
        )
