"""The reuse rule: which session an inbound message joins. One function, every entry point.

For a message on a (channel, contact) pair: join the newest active session of that pair whose last
message is within the channel's reuse window; otherwise open a new one. Then store the message and
bump the session's counters, all in one transaction, serialised per pair:

- PostgreSQL: a transaction-scoped advisory lock keyed by the pair, so two processes or servers
  handling the same pair queue behind each other and different pairs never wait on each other.
- SQLite: transactions are IMMEDIATE (see settings), so every writer already holds the database's
  write lock for its whole transaction.

A message the provider delivers twice (same provider id) stores nothing new and gets the first
delivery's result back.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.db import IntegrityError, connection, transaction
from django.db.models import F
from django.db.models.signals import post_delete, post_save
from django.utils import timezone

from sessions_app.events import message_recorded
from sessions_app.models import (
    Channel,
    ChannelKind,
    Contact,
    Direction,
    Message,
    ReplyState,
    Role,
    Session,
    SessionStatus,
)
from sessions_app.phones import mask_phone

log = logging.getLogger(__name__)

TITLE_PREFIX = {
    ChannelKind.SMS: "SMS from",
    ChannelKind.WHATSAPP: "WhatsApp from",
    ChannelKind.VOICE: "Call from",
    ChannelKind.WEB: "Chat with",
    ChannelKind.API: "Chat with",
}


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


# Channels are read on every inbound message and change only when staff edit one in admin, so each
# process keeps them this long. An edit applies at once in the process that saved it and within this
# many seconds everywhere else (see docs/benchmarks.md).
CHANNEL_CACHE_TTL = timedelta(seconds=30)
_channels: dict[tuple[str, str], tuple[datetime, Channel]] = {}


def channel_for(kind: str, address: str = "") -> Channel:
    """The channel for traffic of `kind` sent to `address`, provisioned with defaults if new."""
    key = (kind, address)
    cached = _channels.get(key)
    # Also stale when the clock went back: the age is bounded either way.
    if cached is not None and timedelta(0) <= timezone.now() - cached[0] < CHANNEL_CACHE_TTL:
        return copy.copy(cached[1])
    channel = _load_or_provision_channel(kind, address)
    # Remembered only once committed: a channel provisioned by a transaction that then rolls back
    # (a database error, a test) must not outlive it here.
    remembered = copy.copy(channel)
    transaction.on_commit(lambda: _remember_channel(key, remembered))
    return channel


def _remember_channel(key: tuple[str, str], channel: Channel) -> None:
    _channels[key] = (timezone.now(), channel)


def forget_cached_channels(**kwargs: Any) -> None:
    _channels.clear()


post_save.connect(forget_cached_channels, sender=Channel, dispatch_uid="ingest.forget_channels_on_save")
post_delete.connect(forget_cached_channels, sender=Channel, dispatch_uid="ingest.forget_channels_on_delete")


def _load_or_provision_channel(kind: str, address: str) -> Channel:
    channel = Channel.objects.filter(kind=kind, address=address).first()
    if channel is not None:
        return channel
    try:
        with transaction.atomic():
            channel = Channel.objects.create(kind=kind, address=address)
    except IntegrityError:  # another request provisioned it first
        return Channel.objects.get(kind=kind, address=address)
    log.info("Provisioned a new %s channel for %s with default settings", kind, mask_phone(address) or "-")
    return channel


def contact_for_phone(phone: str, *, whatsapp_id: str = "", profile_name: str = "") -> Contact:
    """The contact with this E.164 number, created if new; WhatsApp details kept current."""
    contact = Contact.objects.filter(phone=phone, external_user_id="").first()
    if contact is None:
        try:
            with transaction.atomic():
                contact = Contact.objects.create(
                    phone=phone, whatsapp_id=whatsapp_id, whatsapp_profile_name=profile_name
                )
            return contact
        except IntegrityError:  # a concurrent first message created it
            contact = Contact.objects.get(phone=phone, external_user_id="")
    contact.keep_current(whatsapp_id=whatsapp_id, whatsapp_profile_name=profile_name)
    return contact


def _lock_pair(channel: Channel, contact: Contact) -> None:
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            # Two-key form: (channel, contact) ids, each within int4 range for any realistic table.
            cursor.execute("SELECT pg_advisory_xact_lock(%s, %s)", [channel.pk % 2**31, contact.pk % 2**31])


def _reusable_session(
    channel: Channel, contact: Contact, now: datetime, preferred_session_id: Any | None
) -> Session | None:
    active = Session.objects.filter(channel=channel, contact=contact, status=SessionStatus.ACTIVE)
    if preferred_session_id is not None:
        # A client naming its session (the chat APIs) keeps it while it is active, whatever the gap.
        preferred = active.filter(pk=preferred_session_id).first()
        if preferred is not None:
            log.info("Reusing session %s (named by the client)", preferred.pk)
            return preferred
    newest = active.order_by("-last_message_at").first()
    if newest is None:
        return None
    last = newest.last_message_at or newest.created_at
    gap = int((now - last).total_seconds())
    if now - last > channel.effective_reuse_window:
        log.info("Time gap of %ss detected. Creating new session.", gap)
        return None
    log.info("Reusing session %s (last message %ss ago)", newest.pk, gap)
    return newest


def record_inbound_message(
    channel: Channel,
    contact: Contact,
    inbound: InboundMessage,
    *,
    session_defaults: Mapping[str, Any] | None = None,
    preferred_session_id: Any | None = None,
) -> IngestResult:
    """Store `inbound` in the session the reuse rule picks; see the module docstring."""
    # No savepoint when a caller's transaction is already open (the webhooks find the channel and
    # contact first): nothing here is retried after an error, which rolls the whole transaction
    # back, and a savepoint would cost two more round trips on every message.
    with transaction.atomic(savepoint=False):
        _lock_pair(channel, contact)
        if inbound.external_id:
            existing = (
                Message.objects.select_related("session")
                .filter(provider=inbound.provider, external_id=inbound.external_id)
                .first()
            )
            if existing is not None:
                log.info("Duplicate delivery of message %s ignored", existing.pk)
                return IngestResult(existing.session, existing, created_session=False, duplicate=True)

        now = timezone.now()
        session = _reusable_session(channel, contact, now, preferred_session_id)
        if session is not None:
            # Re-checking `status` here means a session the sweep closed a moment ago is not
            # written to: the row lock this UPDATE takes makes the two wait for each other.
            bumped = Session.objects.filter(pk=session.pk, status=SessionStatus.ACTIVE).update(
                message_count=F("message_count") + 1,
                last_message_at=now,
                last_activity_at=now,
                updated_at=now,
            )
            if bumped:
                session.contact = contact  # already loaded: spares listeners a query
                session.message_count += 1
                session.last_message_at = session.last_activity_at = session.updated_at = now
            else:
                session = None
        created = session is None
        if session is None:
            session = _open_session(channel, contact, now, session_defaults or {})

        message = Message.objects.create(
            session=session,
            direction=Direction.INBOUND,
            role=inbound.role,
            content=inbound.content,
            media=list(inbound.media),
            provider=inbound.provider,
            external_id=inbound.external_id or None,
            metadata=dict(inbound.metadata),
            reply_state=ReplyState.OWED if inbound.expects_reply else ReplyState.NONE,
            created_at=now,
        )
        transaction.on_commit(
            lambda: message_recorded.send(
                sender=Message,
                session_id=session.pk,
                message_id=message.pk,
                created_session=created,
                reply_owed=inbound.expects_reply,
                session=session,
                message=message,
            ),
            robust=True,
        )
    return IngestResult(session, message, created_session=created, duplicate=False)


def _open_session(channel: Channel, contact: Contact, now: datetime, defaults: Mapping[str, Any]) -> Session:
    fields = dict(defaults)
    if channel.business_id:
        fields.setdefault("business_id", channel.business_id)
    metadata = dict(fields.pop("metadata", {}) or {})
    if contact.phone:
        metadata.setdefault("fromNumber", contact.phone)
    metadata.setdefault("firstMessageAt", now.isoformat())
    title = (
        fields.pop("title", "")
        or f"{TITLE_PREFIX[ChannelKind(channel.kind)]} {contact.phone or contact.name}"
    )
    session = Session.objects.create(
        channel=channel,
        channel_kind=channel.kind,
        contact=contact,
        title=title[:255],
        metadata=metadata,
        message_count=1,
        first_message_at=now,
        last_message_at=now,
        last_activity_at=now,
        status_changed_at=now,
        created_at=now,
        updated_at=now,
        **fields,
    )
    log.info(
        "Created new %s session %s for %s",
        channel.get_kind_display(),
        session.pk,
        mask_phone(contact.phone) if contact.phone else f"contact {contact.pk}",
    )
    return session


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
    log.info("%s received from %s to %s", ChannelKind(kind).label, mask_phone(from_phone), mask_phone(to))
    with transaction.atomic():
        channel = channel_for(kind, to)
        contact = contact_for_phone(from_phone, whatsapp_id=whatsapp_id, profile_name=profile_name)
        return record_inbound_message(channel, contact, inbound)
