"""The outbox and its subscribers: endpoints, the events written with the changes that caused them,
one delivery per (event, endpoint), and the log of every attempt (docs/event-webhooks.md).

App label `sessions_app` (sessions_app/models.py imports these); relations to the domain's models are
by name, so this module imports none of them.
"""

from __future__ import annotations

import base64
import secrets
from datetime import timedelta

from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import Q
from django.utils import timezone

from sessions_app.events.addresses import check_endpoint_url
from sessions_app.privacy.fields import EncryptedJSONField


class EventType(models.TextChoices):
    SESSION_OPENED = "session.opened", "A session opened"
    SESSION_STATUS_CHANGED = "session.status_changed", "A session's status changed"
    MESSAGE_CREATED = "message.created", "A message was stored (inbound or outbound)"
    MESSAGE_STATUS_CHANGED = "message.status_changed", "A message's delivery status changed"


ALL_EVENTS = "*"
# How long the secret a rotation replaced still signs (receivers switch over meanwhile).
PREVIOUS_SECRET_VALID_FOR = timedelta(hours=24)


def new_secret() -> str:
    """`whsec_` + base64 of 24 random bytes: the Standard Webhooks secret format."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()


class EventEndpoint(models.Model):
    """A subscriber: where events go, which ones, and the secret they are signed with."""

    url = models.URLField(max_length=2000, help_text="Where events are POSTed (https, unless DEBUG is on).")
    description = models.CharField(max_length=255, blank=True)
    event_types = models.JSONField(
        default=list, help_text='The event types sent here, e.g. ["message.created"]; ["*"] for all.'
    )
    enabled = models.BooleanField(default=True)
    # Encrypted at rest like session metadata (docs/data-protection.md); shown once, at creation.
    secret = EncryptedJSONField(default=new_secret, editable=False)
    previous_secret = EncryptedJSONField(default=str, blank=True, editable=False)
    previous_secret_expires_at = models.DateTimeField(null=True, blank=True, editable=False)
    failing_since = models.DateTimeField(
        null=True, blank=True, help_text="Set at the first failed attempt after a success; cleared by one."
    )
    disabled_reason = models.CharField(max_length=255, blank=True)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["id"]
        verbose_name = "event endpoint"

    def __str__(self) -> str:
        return self.description or self.url

    def clean(self) -> None:
        problems: dict[str, str] = {}
        try:
            check_endpoint_url(self.url)
        except ValueError as exc:
            problems["url"] = str(exc)
        types = self.event_types
        if not isinstance(types, list) or not types:
            problems["event_types"] = 'A list of event types, e.g. ["message.created"], or ["*"].'
        else:
            unknown = [t for t in types if t != ALL_EVENTS and t not in EventType.values]
            if unknown:
                problems["event_types"] = (
                    f"Unknown: {', '.join(map(str, unknown))}; one of *, {', '.join(EventType.values)}."
                )
        if problems:
            raise ValidationError(problems)

    def wants(self, event_type: str) -> bool:
        return ALL_EVENTS in self.event_types or event_type in self.event_types

    def signing_secrets(self) -> list[str]:
        """The secrets a delivery is signed with now: the current one, and the one a rotation
        replaced while it is still valid."""
        current = [self.secret]
        expires = self.previous_secret_expires_at
        if self.previous_secret and expires is not None and timezone.now() < expires:
            current.append(self.previous_secret)
        return current

    def rotate_secret(self) -> str:
        """A new secret; the old one keeps signing for `PREVIOUS_SECRET_VALID_FOR`. Returns the new one."""
        self.previous_secret = self.secret
        self.previous_secret_expires_at = timezone.now() + PREVIOUS_SECRET_VALID_FOR
        self.secret = new_secret()
        self.save(update_fields=["secret", "previous_secret", "previous_secret_expires_at", "updated_at"])
        return self.secret


class Event(models.Model):
    """An outbox row: written in the transaction of the change it describes, so it exists exactly when
    the change does. `body` is the JSON text every delivery of it sends, byte for byte."""

    session = models.ForeignKey(
        "sessions_app.Session", on_delete=models.CASCADE, related_name="events", db_index=False
    )
    sequence = models.PositiveBigIntegerField(help_text="Grows by exactly 1 with each event of the session.")
    type = models.CharField(max_length=32, choices=EventType.choices)
    webhook_id = models.CharField(max_length=40, unique=True, help_text="The `webhook-id` header.")
    body = models.TextField(help_text='The payload, {"type", "timestamp", "data"}, as sent.')
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(fields=["session", "sequence"], name="event_session_sequence_unique")
        ]
        indexes = [models.Index(fields=["created_at"], name="event_created")]

    def __str__(self) -> str:
        return f"{self.type} #{self.sequence}"


class DeliveryState(models.TextChoices):
    PENDING = "pending", "Pending"
    SENDING = "sending", "Sending"
    DELIVERED = "delivered", "Delivered"
    FAILED = "failed", "Failed (gave up)"


class Delivery(models.Model):
    """One event for one endpoint: due at `next_attempt_at` until delivered or given up.

    `session_id` and `sequence` are the event's, copied here so that the claim's order rule (an
    earlier event of the same session still owed to this endpoint holds the later ones) is one index
    range (`delivery_owed_order`)."""

    event = models.ForeignKey(Event, on_delete=models.CASCADE, related_name="deliveries")
    # No database constraint: an endpoint deleted in another process while this one's cache still
    # lists it must not fail the change being recorded; such a delivery is never claimed, and the
    # log purge removes it (docs/event-webhooks.md).
    endpoint = models.ForeignKey(
        EventEndpoint, on_delete=models.CASCADE, related_name="deliveries", db_constraint=False
    )
    session_id = models.UUIDField()
    sequence = models.PositiveBigIntegerField()
    state = models.CharField(max_length=16, choices=DeliveryState.choices, default=DeliveryState.PENDING)
    attempts = models.PositiveSmallIntegerField(default=0)
    next_attempt_at = models.DateTimeField(default=timezone.now)
    claimed_at = models.DateTimeField(null=True, blank=True)
    delivered_at = models.DateTimeField(null=True, blank=True)
    last_status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    last_error = models.CharField(max_length=255, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-id"]
        verbose_name_plural = "deliveries"
        constraints = [
            models.UniqueConstraint(fields=["event", "endpoint"], name="delivery_event_endpoint_unique")
        ]
        indexes = [
            # The claim: an endpoint's due deliveries, oldest first.
            models.Index(
                fields=["endpoint", "next_attempt_at"],
                condition=Q(state="pending"),
                name="delivery_due",
            ),
            # The order rule, and recovery's look for claims whose worker vanished.
            models.Index(
                fields=["endpoint", "session_id", "sequence"],
                condition=Q(state__in=["pending", "sending"]),
                name="delivery_owed_order",
            ),
            # The API's and admin's log of one endpoint, newest first.
            models.Index(fields=["endpoint", "-id"], name="delivery_endpoint_recent"),
        ]

    def __str__(self) -> str:
        return f"delivery {self.pk} ({self.state})"


class DeliveryAttempt(models.Model):
    """One try: when, what came back (status, first 1 KB of the answer) or what went wrong."""

    delivery = models.ForeignKey(Delivery, on_delete=models.CASCADE, related_name="attempt_log")
    attempted_at = models.DateTimeField(default=timezone.now)
    status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    duration_ms = models.PositiveIntegerField(default=0)
    response = models.TextField(blank=True, help_text="The first 1 KB of the answer's body.")
    error = models.CharField(max_length=255, blank=True)

    class Meta:
        ordering = ["-attempted_at", "-id"]
        indexes = [models.Index(fields=["attempted_at"], name="delivery_attempt_time")]

    def __str__(self) -> str:
        return f"attempt {self.pk}: {self.status_code or self.error}"
