"""The reuse rule: which session an inbound message joins. One function, every entry point.

For a message on a (channel, contact) pair: join the newest active session of that pair whose last
message is within the channel's reuse window; otherwise reopen the pair's newest session if it was
closed or resolved within the channel's reopen window (`system:reopen`); otherwise open a new one.
Then store the message and bump the session's counters, in one transaction serialised per pair (a
transaction-scoped advisory lock keyed by the pair: two servers handling the same pair queue,
different pairs never wait). A message the provider delivers twice (same provider id) stores nothing
new and gets the first delivery's result back.

The whole rule is one call of the database function `sessions_app_record_inbound`, whose text is
`record_inbound.sql` beside this module: one round trip for the whole message, which is worth about
65 % of the webhook's throughput against the same rule as ORM queries (docs/ingest.md, measured
with `.venv/bin/python bench/ingest.py`). This module passes it plain values and builds the model
instances it returns with `Model.from_db`, as a query would.

With subscribers to the message's events, the same call takes the events' numbers from the session's
counter and returns what their payloads show (the session's metadata, the phone contact's columns),
so recording them adds one statement (sessions_app/events/record.py, docs/event-webhooks.md).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.db import DEFAULT_DB_ALIAS, connection, models, transaction
from django.utils import timezone

from sessions_app.delivery.reply_drain import reply_owed
from sessions_app.events.models import EventType
from sessions_app.events.record import (
    Endpoints,
    EventSpec,
    enabled_endpoints,
    record_events,
    recording,
    wanted,
)
from sessions_app.ingest.channels import cached_channel, channel_for
from sessions_app.models import (
    Channel,
    ChannelKind,
    Contact,
    Message,
    ReplyState,
    Role,
    Session,
    SessionStatus,
)
from sessions_app.phones import mask_phone
from sessions_app.realtime.publish import message_event, status_changed

log = logging.getLogger(__name__)
# The actor of the StatusChange record_inbound.sql writes when a message reopens its session.
REOPEN_ACTOR = "system:reopen"

TITLE_PREFIX = {
    ChannelKind.SMS: "SMS from",
    ChannelKind.WHATSAPP: "WhatsApp from",
    ChannelKind.VOICE: "Call from",
    ChannelKind.WEB: "Chat with",
    ChannelKind.API: "Chat with",
}
# What a caller may choose for a session the rule opens (`session_defaults`).
SESSION_DEFAULTS = frozenset({"title", "business_id", "location_id", "agent_id", "owner", "metadata"})


@dataclass(frozen=True)
class InboundMessage:
    content: str
    provider: str = ""
    external_id: str | None = None
    media: list[dict[str, str]] = field(default_factory=list)
    metadata: dict[str, Any] = field(default_factory=dict)
    role: str = Role.CONTACT
    expects_reply: bool = True


@dataclass(frozen=True)
class IngestResult:
    session: Session
    message: Message
    created_session: bool
    duplicate: bool


@dataclass(frozen=True)
class _Sender:
    """Who sent a phone message, when the contact is found or created inside the call."""

    phone: str
    whatsapp_id: str = ""
    profile_name: str = ""


_CALL = (
    "SELECT * FROM sessions_app_record_inbound(%s::bigint, %s::interval, %s::timestamptz, %s::bigint, "
    "%s, %s, %s, %s, %s, %s::uuid, %s::uuid, %s, %s, %s, %s, %s, %s::integer, %s, %s, %s, %s::jsonb, "
    "%s::jsonb, %s, %s::interval, %s, %s, %s)"
)
# The function's result columns by name, read from its first answer's description and then remembered:
# psycopg builds the description's column objects anew on every call, which for its 35 columns was
# 0.37 of an inbound SMS's 5.28 M instructions (bench/ingest_cpu.py --instructions).
_COLUMNS: dict[str, tuple[str, ...]] = {}
# The events an inbound message may cause, in the order of the function's p_event_* parameters.
_EVENT_TYPES = (EventType.SESSION_OPENED, EventType.SESSION_STATUS_CHANGED, EventType.MESSAGE_CREATED)


def record_inbound_message(
    channel: Channel,
    contact: Contact,
    inbound: InboundMessage,
    *,
    session_defaults: Mapping[str, Any] | None = None,
    preferred_session_id: Any | None = None,
) -> IngestResult:
    """Store `inbound` from `contact` in the session the reuse rule picks on `channel`.

    `preferred_session_id`: a session the client named (the chat APIs), joined while it is the pair's
    and active, whatever the gap. `session_defaults`: values for a session the rule opens.
    """
    return _record(
        channel, inbound, contact=contact, defaults=session_defaults or {}, preferred=preferred_session_id
    )


def record_phone_message(
    *,
    kind: str,
    to: str,
    from_phone: str,
    inbound: InboundMessage,
    whatsapp_id: str = "",
    profile_name: str = "",
) -> IngestResult:
    """An inbound SMS, WhatsApp message or voice turn from `from_phone` to our number `to`."""
    if log.isEnabledFor(logging.INFO):  # seed 003's line, without the text (the numbers masked)
        label = ChannelKind(kind).label
        log.info("%s received from %s to %s", label, mask_phone(from_phone), mask_phone(to))
    sender = _Sender(from_phone, whatsapp_id=whatsapp_id, profile_name=profile_name)
    channel = cached_channel(kind, to)
    if channel is not None:
        # One statement in autocommit: the function is its own transaction, all or nothing.
        return _record(channel, inbound, sender=sender)
    with transaction.atomic():  # a channel provisioned now commits with this message or not at all
        return _record(channel_for(kind, to), inbound, sender=sender)


def _record(
    channel: Channel,
    inbound: InboundMessage,
    *,
    contact: Contact | None = None,
    sender: _Sender | None = None,
    defaults: Mapping[str, Any] | None = None,
    preferred: Any | None = None,
) -> IngestResult:
    defaults = dict(defaults or {})
    unknown = set(defaults) - SESSION_DEFAULTS
    if unknown:
        raise TypeError(f"not session defaults: {', '.join(sorted(unknown))}")
    now = timezone.now()
    phone = contact.phone if contact is not None else (sender.phone if sender else "")
    metadata = dict(defaults.get("metadata") or {})
    if phone:
        metadata.setdefault("fromNumber", phone)
    metadata.setdefault("firstMessageAt", now.isoformat())
    who = phone or (contact.name if contact is not None else "")
    title = defaults.get("title") or f"{TITLE_PREFIX[ChannelKind(channel.kind)]} {who}"
    owner = defaults.get("owner")
    message_metadata = dict(inbound.metadata)
    params = [
        channel.pk,
        channel.effective_reuse_window,
        now,
        contact.pk if contact is not None else None,
        phone,
        sender.whatsapp_id if sender else "",
        sender.profile_name if sender else "",
        inbound.provider,
        inbound.external_id or None,
        preferred,
        uuid.uuid4(),
        channel.kind,
        title[:255],
        defaults.get("business_id") or channel.business_id,
        defaults.get("location_id") or "",
        defaults.get("agent_id") or "",
        owner.pk if owner is not None else None,
        _json(Session, "metadata", metadata),
        inbound.role,
        inbound.content,
        _json(Message, "media", list(inbound.media)),
        _json(Message, "metadata", message_metadata),
        ReplyState.OWED if inbound.expects_reply else ReplyState.NONE,
        channel.effective_reopen_window,
    ]
    # One read of the subscribers: the function takes a number for each event they want, and
    # record_events records exactly those.
    endpoints = enabled_endpoints()
    params += [wanted(event_type, endpoints=endpoints) for event_type in _EVENT_TYPES]
    # With subscribers to its events, the statement and the events it causes are one transaction;
    # otherwise the statement runs alone, in autocommit when the caller has no transaction open.
    with recording(*_EVENT_TYPES, endpoints=endpoints):
        return _store(
            channel,
            inbound,
            params,
            message_metadata,
            contact=contact,
            phone=phone,
            now=now,
            endpoints=endpoints,
        )


def _store(
    channel: Channel,
    inbound: InboundMessage,
    params: list[Any],
    message_metadata: dict[str, Any],
    *,
    contact: Contact | None,
    phone: str,
    now: datetime,
    endpoints: Endpoints,
) -> IngestResult:
    with connection.cursor() as cursor:  # `connection` is the default database's, DEFAULT_DB_ALIAS
        cursor.execute(_CALL, params)
        names = _COLUMNS.get(_CALL)
        if names is None:
            names = _COLUMNS.setdefault(_CALL, tuple(column.name for column in cursor.description))
        row = dict(zip(names, cursor.fetchone(), strict=True))
    outcome = row["outcome"]
    if outcome == "duplicate":
        existing = Message.objects.select_related("session").get(pk=row["message_id"])
        log.info("Duplicate delivery of message %s ignored", existing.pk)
        return IngestResult(existing.session, existing, created_session=False, duplicate=True)

    if contact is None:
        contact = _loaded(Contact, _contact_values(row, phone))
    if row["session_metadata"] is not None:  # the message has events: their payloads show it
        field = Session._meta.get_field("metadata")
        assert isinstance(field, models.Field)
        row["metadata"] = field.from_db_value(row["session_metadata"], None, connection)
    session = _loaded(Session, row)
    session.channel = channel
    session.contact = contact
    message = _loaded(
        Message,
        {
            "id": row["message_id"],
            "session_id": session.pk,
            "direction": "inbound",
            "role": inbound.role,
            "content": inbound.content,
            "media": list(inbound.media),
            "provider": inbound.provider,
            "external_id": inbound.external_id or None,
            "metadata": message_metadata,
            "delivery_status": "",
            "delivery_error": "",
            "delivery_attempts": 0,
            "delivery_claimed_at": None,
            "reply_state": ReplyState.OWED if inbound.expects_reply else ReplyState.NONE,
            "reply_claimed_at": None,
            "reply_attempts": 0,
            "reply_error": "",
            "in_reply_to_id": None,
            "created_at": now,
        },
    )
    message.session = session
    created = outcome not in ("named", "reused", "reopened")
    _log_outcome(outcome, row["gap"], channel, session, contact, row["reopened_from"])
    specs = [EventSpec(EventType.SESSION_OPENED)] if created else []
    was = row["reopened_from"]
    if outcome == "reopened":
        change = {"from": was, "to": SessionStatus.ACTIVE, "actor": REOPEN_ACTOR}
        specs.append(EventSpec(EventType.SESSION_STATUS_CHANGED, extra=change))
    specs.append(EventSpec(EventType.MESSAGE_CREATED, message=message))
    record_events(session.pk, specs, session=session, endpoints=endpoints, numbered_to=row["event_sequence"])
    # Once committed (at once in autocommit): the session's sockets hear of it (a reopened one's
    # status first), then its reply is queued, in that order, so a socket sees the message before
    # the reply it causes.
    if outcome == "reopened":
        transaction.on_commit(lambda: status_changed(session.pk, was, SessionStatus.ACTIVE), robust=True)
    transaction.on_commit(lambda: message_event(message, session, opened=created), robust=True)
    if inbound.expects_reply:
        transaction.on_commit(reply_owed, robust=True)
    return IngestResult(session, message, created_session=created, duplicate=False)


def _contact_values(row: Mapping[str, Any], phone: str) -> dict[str, Any]:
    """The phone contact's columns the function returned: all of them when the message has events
    (their payloads show the contact), else those at hand (the others deferred)."""
    values = {"id": row["contact_id"], "phone": phone, "external_user_id": ""}
    if row["contact_created_at"] is not None:
        names = ("whatsapp_id", "whatsapp_profile_name", "display_name", "company", "business_id")
        values |= {name: row[f"contact_{name}"] for name in (*names, "created_at", "updated_at")}
    return values


def _json(model: type[models.Model], name: str, value: Any) -> Any:
    """`value` as the field stores it (the JSON text a `jsonb` parameter takes)."""
    field = model._meta.get_field(name)
    assert isinstance(field, models.Field)
    return field.get_db_prep_save(value, connection)


def _loaded(model: type[models.Model], values: Mapping[str, Any]) -> Any:
    """An instance of `model` as a query returning `values` (attname → value) would load it: the
    fields not given are deferred, read from the database only if someone asks for them."""
    fields = [f for f in model._meta.concrete_fields if f.attname in values]
    return model.from_db(DEFAULT_DB_ALIAS, [f.attname for f in fields], [values[f.attname] for f in fields])


def _log_outcome(
    outcome: str,
    gap: float | None,
    channel: Channel,
    session: Session,
    contact: Contact,
    reopened_from: str | None = None,
) -> None:
    if outcome == "reopened":
        log.info("Reopened session %s (%s %ss ago)", session.pk, reopened_from, int(gap or 0))
        return
    if outcome == "named":
        log.info("Reusing existing session %s (named by the client)", session.pk)
        return
    if outcome == "reused":
        log.info("Reusing existing session %s (last message %ss ago)", session.pk, int(gap or 0))
        return
    if outcome == "gap":
        log.info("Time gap of %ss detected. Creating new session.", int(gap or 0))
    log.info(
        "Created new %s session: %s for %s",
        ChannelKind(channel.kind).label,
        session.pk,
        mask_phone(contact.phone) if contact.phone else f"contact {contact.pk}",
    )
