"""The domain: channels traffic arrives on, the contacts who write, their sessions and messages.

Rules that change these rows live in their own modules (`ingest/` for the reuse rule,
`lifecycle/transitions.py` for status transitions); the models hold data, lookups and small derived
values.
"""

from __future__ import annotations

import re
import uuid
from datetime import timedelta
from typing import Any

import jsonschema
from django.conf import settings
from django.contrib.postgres.indexes import BrinIndex
from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import Q
from django.utils import timezone

from sessions_app.events.models import Delivery as Delivery
from sessions_app.events.models import DeliveryAttempt as DeliveryAttempt
from sessions_app.events.models import Event as Event
from sessions_app.events.models import EventEndpoint as EventEndpoint
from sessions_app.privacy.fields import EncryptedJSONField


class ChannelKind(models.TextChoices):
    SMS = "sms", "SMS"
    WHATSAPP = "whatsapp", "WhatsApp"
    VOICE = "voice", "Voice"
    WEB = "web", "Web"
    API = "api", "API"


class Surface(models.TextChoices):
    """The seed API a chat channel serves; each has its own channel, so its own lifecycle thresholds."""

    NONE = "", "None (Twilio, native API)"
    SESSIONS_WEBHOOK = "000", "000 sessions webhook"
    AGENT_API = "001", "001 agent API"
    WORKSPACE_API = "002", "002 workspaces"
    CHARACTERS_API = "004", "004 characters"


class SessionStatus(models.TextChoices):
    ACTIVE = "active", "Active"
    CLOSED = "closed", "Closed"
    RESOLVED = "resolved", "Resolved"
    COMPLETED = "completed", "Completed"
    ABANDONED = "abandoned", "Abandoned"
    ARCHIVED = "archived", "Archived"
    # Its messages moved into another session (`Session.merged_into`); terminal (docs/session-boundaries.md).
    MERGED = "merged", "Merged"


class Direction(models.TextChoices):
    INBOUND = "inbound", "Inbound"
    OUTBOUND = "outbound", "Outbound"


class Role(models.TextChoices):
    CONTACT = "contact", "Contact"
    AGENT = "agent", "Agent"
    STAFF = "staff", "Staff"
    SYSTEM = "system", "System"


class ReplyState(models.TextChoices):
    """Whether an inbound message still waits for the agent's answer (see `replies.py`)."""

    NONE = "", "No reply expected"
    OWED = "owed", "Reply owed"
    CLAIMED = "claimed", "Reply being produced"
    DONE = "done", "Replied"
    FAILED = "failed", "Reply failed"


class DeliveryStatus(models.TextChoices):
    NONE = "", "—"
    PENDING = "pending", "Pending"
    QUEUED = "queued", "Queued"
    SENDING = "sending", "Sending"
    SENT = "sent", "Sent"
    DELIVERED = "delivered", "Delivered"
    UNDELIVERED = "undelivered", "Undelivered"
    FAILED = "failed", "Failed"
    RECEIVED = "received", "Received"


class Channel(models.Model):
    """Where traffic arrives: a Twilio number (per kind) or a chat surface (web, api)."""

    kind = models.CharField(max_length=16, choices=ChannelKind.choices)
    address = models.CharField(
        max_length=64,
        blank=True,
        help_text="The Twilio number traffic is sent To, in E.164; empty for web and API channels.",
    )
    name = models.CharField(max_length=100, blank=True)
    surface = models.CharField(
        max_length=8,
        choices=Surface.choices,
        default=Surface.NONE,
        blank=True,
        help_text="The seed surface whose sessions this channel holds: its abandon-after and "
        "archive-after are that surface's lifecycle.",
    )
    business_id = models.CharField(
        max_length=128, blank=True, help_text="The business this number serves; its sessions carry it."
    )
    reuse_window = models.PositiveIntegerField(
        null=True,
        blank=True,
        help_text="Seconds after a session's last message in which a new message joins it. "
        "Empty: the SESSION_REUSE_WINDOW setting.",
    )
    abandon_after = models.PositiveIntegerField(
        null=True,
        blank=True,
        help_text="Seconds without a message before an active session is abandoned; 0 disables. "
        "Empty: the SESSION_ABANDON_AFTER setting.",
    )
    archive_after = models.PositiveIntegerField(
        null=True,
        blank=True,
        help_text="Seconds after a session ended (its last status change) before it is archived; 0 disables. "
        "Empty: the SESSION_ARCHIVE_AFTER setting.",
    )
    reopen_window = models.PositiveIntegerField(
        null=True,
        blank=True,
        help_text="Seconds after a session was closed or resolved in which a new message from its contact "
        "reopens it instead of opening a new session; 0 never reopens. Empty: the SESSION_REOPEN_WINDOW "
        "setting.",
    )
    is_active = models.BooleanField(default=True)
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["kind", "address", "surface"], name="channel_kind_address_surface_unique"
            )
        ]
        ordering = ["kind", "address"]

    def __str__(self) -> str:
        label = self.name or self.address or "default"
        return f"{self.get_kind_display()} {label}"

    @property
    def effective_reuse_window(self) -> timedelta:
        seconds = settings.SESSION_REUSE_WINDOW if self.reuse_window is None else self.reuse_window
        return timedelta(seconds=seconds)

    @property
    def effective_reopen_window(self) -> timedelta:
        seconds = settings.SESSION_REOPEN_WINDOW if self.reopen_window is None else self.reopen_window
        return timedelta(seconds=seconds)

    @property
    def effective_abandon_after(self) -> int:
        return settings.SESSION_ABANDON_AFTER if self.abandon_after is None else self.abandon_after

    @property
    def effective_archive_after(self) -> int:
        return settings.SESSION_ARCHIVE_AFTER if self.archive_after is None else self.archive_after

    def reuse_window_conflict(self) -> str | None:
        """Why this channel's reuse window outlasts its abandon-after, or None when it does not.

        The same rule settings.py enforces globally: a session must not be abandoned while a new
        message could still join it (0 disables abandonment, so never conflicts). `clean` refuses
        such a save; the `sessions_app.W001` check and the sweep report rows that a settings
        change made conflict later (sessions_app/checks.py).
        """
        abandon = self.effective_abandon_after
        reuse = int(self.effective_reuse_window.total_seconds())
        if abandon and reuse > abandon:
            return (
                f"The reuse window ({reuse}s) must not be longer than abandon-after ({abandon}s): "
                "a session would be abandoned while it could still be reused."
            )
        return None

    def clean(self) -> None:
        conflict = self.reuse_window_conflict()
        if conflict:
            field = "abandon_after" if self.abandon_after is not None else "reuse_window"
            raise ValidationError({field: conflict})


class Contact(models.Model):
    """Someone who writes or calls: a phone number, a WhatsApp id, or an API client's user."""

    phone = models.CharField(max_length=20, blank=True, help_text="E.164")
    whatsapp_id = models.CharField(max_length=32, blank=True)
    whatsapp_profile_name = models.CharField(max_length=255, blank=True)
    display_name = models.CharField(max_length=255, blank=True)
    company = models.CharField(max_length=255, blank=True)
    external_user_id = models.CharField(max_length=128, blank=True)
    business_id = models.CharField(max_length=128, blank=True)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            # A phone number is one person; API users are one person per business.
            models.UniqueConstraint(
                fields=["phone"],
                condition=~Q(phone="") & Q(external_user_id=""),
                name="contact_phone_unique",
            ),
            models.UniqueConstraint(
                fields=["business_id", "external_user_id"],
                condition=~Q(external_user_id=""),
                name="contact_business_user_unique",
            ),
        ]

    def __str__(self) -> str:
        return self.name

    def keep_current(self, **values: str) -> None:
        """Store every given non-empty value that differs from this row's, in one UPDATE of just
        those fields (a WhatsApp profile name, a display name that changed since last time)."""
        changed = [field for field, value in values.items() if value and getattr(self, field) != value]
        for field in changed:
            setattr(self, field, values[field])
        if changed:
            self.save(update_fields=[*changed, "updated_at"])

    @property
    def name(self) -> str:
        return (
            self.display_name
            or self.whatsapp_profile_name
            or self.phone
            or self.external_user_id
            or f"contact {self.pk}"
        )


class Session(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    # Unique among the sessions that have one: the constraint below is partial, so the many sessions
    # without one (every Twilio session) cost no index entry when a message or the sweep rewrites them.
    external_id = models.CharField(  # noqa: DJ001 - NULL: no client id, never two equal ids
        max_length=128,
        null=True,
        blank=True,
        help_text="A client-supplied id, e.g. session_1724567890123.",
    )
    channel = models.ForeignKey(Channel, on_delete=models.PROTECT, related_name="sessions")
    # Copied from the channel at creation (a channel never changes kind) so lists and tabs filter
    # by kind on one indexed column instead of a join.
    channel_kind = models.CharField(max_length=16, choices=ChannelKind.choices, editable=False)
    # No single-column index of its own: `session_contact_recent` (contact, last activity) serves
    # every lookup by contact. The same for `owner` and `session_owner_recent`.
    contact = models.ForeignKey(
        Contact, on_delete=models.PROTECT, null=True, blank=True, related_name="sessions", db_index=False
    )
    business_id = models.CharField(max_length=128, blank=True)
    location_id = models.CharField(max_length=128, blank=True)
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="conversation_sessions",
        db_index=False,
    )
    agent_id = models.CharField(max_length=128, blank=True, help_text="Agent or character id.")
    title = models.CharField(max_length=255, blank=True)
    description = models.TextField(blank=True)
    thumbnail_url = models.CharField(max_length=1000, blank=True)
    status = models.CharField(max_length=16, choices=SessionStatus.choices, default=SessionStatus.ACTIVE)
    # Encrypted at rest (docs/data-protection.md); nothing may filter on what is inside it.
    metadata = EncryptedJSONField(default=dict, blank=True)
    mission_id = models.CharField(max_length=128, blank=True)
    message_count = models.PositiveIntegerField(default=0)
    first_message_at = models.DateTimeField(null=True, blank=True)
    last_message_at = models.DateTimeField(null=True, blank=True)
    last_activity_at = models.DateTimeField(default=timezone.now)
    status_changed_at = models.DateTimeField(default=timezone.now)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    updated_at = models.DateTimeField(default=timezone.now)
    # Set with status `merged`: the session this one's messages moved into (lifecycle/boundaries.py).
    # Cascade: a merged session is an empty pointer, meaningless once its target is gone.
    merged_into = models.ForeignKey(
        "self",
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        editable=False,
        related_name="merged_from",
        db_index=False,
        help_text="The session this one was merged into.",
    )
    # The last event's `sequence` (sessions_app/events/record.py); a database default too, since the
    # reuse rule's function inserts sessions by listing its columns.
    event_sequence = models.PositiveBigIntegerField(default=0, db_default=0, editable=False)

    class Meta:
        ordering = ["-last_activity_at", "-id"]
        indexes = [
            # The reuse rule: the newest active session of a (channel, contact) pair. Partial: only
            # active sessions can be joined, and the others (most of the table) cost no entry here.
            models.Index(
                fields=["channel", "contact", "-last_message_at"],
                condition=Q(status=SessionStatus.ACTIVE),
                name="session_reuse_lookup",
            ),
            models.Index(fields=["-last_activity_at", "-id"], name="session_recent"),
            models.Index(fields=["channel_kind", "-last_activity_at", "-id"], name="session_kind_recent"),
            # Lists filtered by status, and the sweep's claim of quiet active sessions.
            models.Index(fields=["status", "-last_activity_at", "-id"], name="session_status_recent"),
            # The same lists on one channel tab, and in creation order (docs/sweep.md, "Stop 18").
            models.Index(
                fields=["channel_kind", "status", "-last_activity_at", "-id"],
                name="session_kind_status_recent",
            ),
            models.Index(fields=["status", "-created_at", "-id"], name="session_status_created"),
            # Admin's "last message at: no date": only sessions that never had a message.
            models.Index(
                fields=["-last_activity_at", "-id"],
                condition=Q(last_message_at__isnull=True),
                name="session_no_message_recent",
            ),
            # The sweep's claim of ended sessions, due by when they ended.
            models.Index(fields=["status", "status_changed_at", "id"], name="session_status_changed"),
            # Partial: only API sessions have a business or an owner, and filters always name one, so the
            # Twilio sessions (most of the table) cost no entry here on every rewrite (docs/sweep.md).
            models.Index(
                fields=["business_id", "-last_activity_at"],
                condition=~Q(business_id=""),
                name="session_business_recent",
            ),
            models.Index(
                fields=["owner", "-last_activity_at"],
                condition=Q(owner__isnull=False),
                name="session_owner_recent",
            ),
            # The staff list sorted by creation, its date-range filter and the chart's "today".
            models.Index(fields=["-created_at", "-id"], name="session_created_recent"),
            # Partial: only merged sessions point anywhere; the rest cost no entry on each rewrite.
            models.Index(
                fields=["merged_into"],
                condition=Q(merged_into__isnull=False),
                name="session_merged_into",
            ),
        ]
        constraints = [
            models.UniqueConstraint(
                fields=["external_id"],
                condition=Q(external_id__isnull=False),
                name="session_external_id_unique",
            )
        ]

    def __str__(self) -> str:
        return self.title or str(self.id)

    @property
    def is_active(self) -> bool:
        return self.status == SessionStatus.ACTIVE


class Message(models.Model):
    # No index of its own: `message_thread` starts with session_id and serves every lookup by it.
    session = models.ForeignKey(Session, on_delete=models.CASCADE, related_name="messages", db_index=False)
    direction = models.CharField(max_length=8, choices=Direction.choices)
    role = models.CharField(max_length=8, choices=Role.choices)
    content = models.TextField(blank=True)
    media = models.JSONField(
        default=list, blank=True, help_text='A list of {"url": ..., "content_type": ...} items.'
    )
    provider = models.CharField(max_length=16, default="", blank=True, help_text="Who issued external_id.")
    external_id = models.CharField(  # noqa: DJ001 - NULL: no provider id, never two equal ids
        max_length=128,
        null=True,
        blank=True,
        help_text="The provider's id: a MessageSid, or a CallSid and turn.",
    )
    metadata = models.JSONField(default=dict, blank=True)
    delivery_status = models.CharField(
        max_length=16, choices=DeliveryStatus.choices, default=DeliveryStatus.NONE, blank=True
    )
    # On an agent reply: the inbound message it answers. One-to-one, so the database itself
    # refuses a second reply to the same message, whatever retries or redeliveries happen.
    in_reply_to = models.OneToOneField(
        "self", on_delete=models.SET_NULL, null=True, blank=True, related_name="reply"
    )
    reply_state = models.CharField(
        max_length=8, choices=ReplyState.choices, default=ReplyState.NONE, blank=True
    )
    reply_claimed_at = models.DateTimeField(null=True, blank=True)
    delivery_error = models.TextField(blank=True)
    # Replies and deliveries (see replies.py, outbound.py): attempts so far, and why the last failed.
    reply_attempts = models.PositiveSmallIntegerField(default=0)
    reply_error = models.TextField(blank=True)
    delivery_attempts = models.PositiveSmallIntegerField(default=0)
    delivery_claimed_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["created_at", "id"]
        constraints = [
            models.UniqueConstraint(
                fields=["provider", "external_id"],
                condition=Q(external_id__isnull=False),
                name="message_provider_external_id_unique",
            )
        ]
        indexes = [
            models.Index(fields=["session", "created_at", "id"], name="message_thread"),
            models.Index(
                fields=["created_at"],
                condition=Q(reply_state__in=["owed", "claimed"]),
                name="message_reply_pending",
            ),
            models.Index(
                fields=["created_at"],
                condition=Q(delivery_status__in=["pending", "sending"]),
                name="message_delivery_pending",
            ),
            # Reports count messages per day (sessions_app/reports/, docs/reports.md). BRIN: rows arrive
            # in time order, so a few pages of block ranges find a day, at no extra B-tree write per message.
            BrinIndex(fields=["created_at"], name="message_created_brin"),
        ]

    def __str__(self) -> str:
        return f"{self.role} message {self.pk}"


class StatusChange(models.Model):
    """One row per status transition: who or what moved a session, when, from what, to what."""

    # Indexed by `status_change_session` (session, created_at) only: a second index on session alone
    # would be one more entry to write per transition for nothing.
    session = models.ForeignKey(
        Session, on_delete=models.CASCADE, related_name="status_changes", db_index=False
    )
    from_status = models.CharField(max_length=16, choices=SessionStatus.choices)
    to_status = models.CharField(max_length=16, choices=SessionStatus.choices)
    actor = models.CharField(max_length=150, help_text='e.g. "user:alice", "system:sweep", "api-key:crm".')
    reason = models.CharField(max_length=255, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["created_at", "id"]
        indexes = [
            models.Index(fields=["session", "created_at"], name="status_change_session"),
            # Reports count transitions per day (docs/reports.md); BRIN, as for messages.
            BrinIndex(fields=["created_at"], name="status_change_created_brin"),
        ]

    def __str__(self) -> str:
        return f"{self.from_status} → {self.to_status}"


class ErasureRecord(models.Model):
    """The audit trail of an erasure: when, who, how many rows of each kind. Never the person's data."""

    actor = models.CharField(max_length=150, help_text='e.g. "staff:alice", "cli:root".')
    reference = models.CharField(
        max_length=128,
        blank=True,
        help_text="The request's reference (e.g. a ticket number); never the person's name or number.",
    )
    deleted = models.JSONField(
        default=dict, help_text='Rows removed per kind, e.g. {"sessions_app.Message": 12}.'
    )
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"Erasure {self.pk} by {self.actor}"


class KeywordAnswer(models.Model):
    """A canned answer the builtin agent gives when a contact's message mentions a keyword."""

    keyword = models.CharField(
        max_length=100, help_text="Matched as a whole word or phrase, ignoring case, e.g. 'opening hours'."
    )
    answer = models.TextField()
    position = models.PositiveIntegerField(default=0, help_text="Lower first when several keywords match.")
    is_active = models.BooleanField(default=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["position", "id"]

    def __str__(self) -> str:
        return self.keyword


class Character(models.Model):
    """A seed 004 persona: the `config_id` its client sends, and how the agent speaks as it."""

    config_id = models.CharField(
        max_length=128, unique=True, help_text="The client's config_id, e.g. CHAR_xxx."
    )
    name = models.CharField(max_length=100)
    system_prompt = models.TextField(help_text="The agent's system message in this character's sessions.")
    model = models.CharField(
        max_length=100,
        blank=True,
        help_text="The openai backend's model for this character; empty: AGENT_MODEL.",
    )
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name", "config_id"]

    def __str__(self) -> str:
        return f"{self.name} ({self.config_id})"


class ApiKey(models.Model):
    """A key a service sends as `Authorization: Bearer sk_<prefix>_<secret>`; only its hash is stored.

    The key is 256 random bits, so one SHA-256 is enough to make a leaked table useless (a slow
    password hash protects guessable secrets, and this is not one). The prefix finds the row.
    """

    name = models.CharField(max_length=100)
    prefix = models.CharField(max_length=16, unique=True, editable=False)
    key_hash = models.CharField(max_length=64, editable=False)
    business_id = models.CharField(
        max_length=128, blank=True, help_text="If set, the key sees and writes only this business's sessions."
    )
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    revoked_at = models.DateTimeField(null=True, blank=True, help_text="Set to revoke the key.")
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        ordering = ["name"]
        verbose_name = "API key"

    def __str__(self) -> str:
        return f"{self.name} (sk_{self.prefix}_…)"

    @property
    def is_revoked(self) -> bool:
        return self.revoked_at is not None


TOOL_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")  # what OpenAI accepts as a function name


def empty_object_schema() -> dict[str, Any]:
    return {"type": "object", "properties": {}}


class ToolRunsOn(models.TextChoices):
    FRONTEND = "frontend", "Frontend (the user's page, as ai_function_call)"
    BACKEND = "backend", "Backend (a handler on this server)"


class AgentTool(models.Model):
    """A function the agent may call (the openai backend offers every active one to the model).

    A frontend tool's call goes to the session's sockets as `ai_function_call`; a backend tool runs a
    handler of `agents/tools.py` and its result goes back to the model."""

    name = models.CharField(
        max_length=64, unique=True, help_text="The function's name: letters, digits, _ and -, at most 64."
    )
    description = models.TextField(help_text="What the tool does and when to call it (the model reads it).")
    parameters = models.JSONField(
        default=empty_object_schema, help_text='JSON schema of the arguments, e.g. {"type": "object", ...}.'
    )
    runs_on = models.CharField(max_length=16, choices=ToolRunsOn.choices, default=ToolRunsOn.FRONTEND)
    is_active = models.BooleanField(default=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return f"{self.name} ({self.runs_on})"

    def clean(self) -> None:
        problems: dict[str, str] = {}
        if not TOOL_NAME.match(self.name or ""):
            problems["name"] = "Use letters, digits, _ and - only, at most 64 characters."
        schema = self.parameters
        if not isinstance(schema, dict) or schema.get("type") != "object":
            problems["parameters"] = 'The arguments are a JSON object: the schema needs "type": "object".'
        else:
            try:
                jsonschema.Draft202012Validator.check_schema(schema)
            except jsonschema.SchemaError as exc:
                problems["parameters"] = f"Not a valid JSON schema: {exc.message}"
        if problems:
            raise ValidationError(problems)


class WindowRollupState(models.Model):
    """How far the window report's rollup of a channel goes (ingest/window_report.py): every UTC day
    before `rolled_until` is summed up. `dirty_before`: sessions with messages up to then were
    deleted since (an erasure, a purge), so a report of a period starting before it reads the
    messages themselves until the next roll rebuilds the channel (set by a trigger)."""

    channel = models.OneToOneField(Channel, on_delete=models.CASCADE, primary_key=True)
    rolled_until = models.DateField(null=True, blank=True)
    dirty_before = models.DateTimeField(null=True, blank=True)
    rolled_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"window rollup of channel {self.channel_id} until {self.rolled_until}"


class WindowRollupDay(models.Model):
    """One contact's inbound messages of one UTC day on one channel, for the window report: the first
    and last, and the contact's inbound message before the first (any day; null: none)."""

    channel = models.ForeignKey(Channel, on_delete=models.CASCADE, db_index=False, related_name="+")
    contact = models.ForeignKey(Contact, on_delete=models.CASCADE, db_index=False, related_name="+")
    day = models.DateField()
    first_at = models.DateTimeField()
    last_at = models.DateTimeField()
    previous_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            # Also the lookup of a contact's latest day before another (the next roll's previous_at).
            models.UniqueConstraint(fields=["channel", "contact", "day"], name="window_rollup_day_unique")
        ]
        indexes = [models.Index(fields=["channel", "day"], name="window_rollup_day_channel")]

    def __str__(self) -> str:
        return f"contact {self.contact_id} on {self.day}"


class WindowRollupGaps(models.Model):
    """Gaps between consecutive inbound messages of one contact within one UTC day on one channel,
    counted per length in whole seconds rounded up (exact for whole-second windows: a gap is longer
    than w seconds exactly when its rounded-up length is)."""

    channel = models.ForeignKey(Channel, on_delete=models.CASCADE, db_index=False, related_name="+")
    day = models.DateField()
    gap_seconds = models.PositiveIntegerField()
    count = models.PositiveIntegerField()

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["channel", "day", "gap_seconds"], name="window_rollup_gaps_unique"
            )
        ]

    def __str__(self) -> str:
        return f"{self.count} gaps of {self.gap_seconds}s on {self.day}"


# --- Reports (sessions_app/reports/, docs/reports.md) ----------------------------------------------


class DailyRollup(models.Model):
    """One day's report figures for one channel kind and business, the day taken in TIME_ZONE.

    Written only by `sessions_app/reports/rollup.py` (recomputed whole, never incremented); the summary
    reads past days from here, and today from today's provisional rows while they are recent enough
    (RollupDay.provisional). Durations are whole seconds: `*_count` sessions, `*_total` their sum,
    `*_histogram` how many sessions per bucket (reports/metrics.py).

    Besides a row per channel kind and business, a day has its totals: per kind over every business
    (`business_id` NULL), per business over every kind (`channel_kind` NULL) and over everything (both
    NULL), so a summary reads a few rows a day whatever the number of businesses. NULL is "every",
    `business_id` "" is "no business"."""

    day = models.DateField()
    channel_kind = models.CharField(max_length=16, null=True)  # noqa: DJ001 - NULL: every kind
    business_id = models.CharField(max_length=128, blank=True, null=True)  # noqa: DJ001 - NULL: every business
    sessions_opened = models.PositiveIntegerField(default=0)
    messages_inbound = models.PositiveIntegerField(default=0)
    messages_outbound = models.PositiveIntegerField(default=0)
    staff_replies = models.PositiveIntegerField(default=0)
    abandoned = models.PositiveIntegerField(default=0)
    reopened = models.PositiveIntegerField(default=0)
    merged = models.PositiveIntegerField(default=0)
    agent_only_sessions = models.PositiveIntegerField(default=0)
    first_response_count = models.PositiveIntegerField(default=0)
    first_response_total = models.BigIntegerField(default=0)
    first_response_histogram = models.JSONField(default=dict)
    resolution_count = models.PositiveIntegerField(default=0)
    resolution_total = models.BigIntegerField(default=0)
    resolution_histogram = models.JSONField(default=dict)

    class Meta:
        ordering = ["day", "channel_kind", "business_id"]
        constraints = [
            models.UniqueConstraint(
                fields=["day", "channel_kind", "business_id"],
                name="daily_rollup_day_kind_business",
                nulls_distinct=False,
            )
        ]

    def __str__(self) -> str:
        return f"{self.day} {self.channel_kind} {self.business_id or '-'}"


class RollupDay(models.Model):
    """Whether the rollup holds a day: in which time zone, and whether later changes made it stale.

    The rollup task claims stale days with `select_for_update(skip_locked=True)`, so two workers never
    compute the same day, and marking a day stale waits for a computation of it in progress.
    `provisional` is today's row, recomputed whole every `REPORTS_TODAY_INTERVAL` and read only while
    its `computed_at` (the time its figures are as of) is under `REPORTS_TODAY_MAX_AGE` old; once the
    day is over the daily task recomputes it as final."""

    day = models.DateField(primary_key=True)
    time_zone = models.CharField(max_length=64)
    stale = models.BooleanField(default=True)
    provisional = models.BooleanField(default=False)
    computed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["day"]
        indexes = [models.Index(fields=["day"], condition=Q(stale=True), name="rollup_day_stale")]

    def __str__(self) -> str:
        return f"{self.day} ({'stale' if self.stale else 'fresh'})"


class RollupWatermark(models.Model):
    """How far the rollup task has looked for changed sessions (one row, key "daily")."""

    key = models.CharField(max_length=32, primary_key=True)
    changes_until = models.DateTimeField()

    def __str__(self) -> str:
        return f"{self.key}: {self.changes_until.isoformat()}"
