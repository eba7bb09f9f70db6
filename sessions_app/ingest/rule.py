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

Two implementations of this one rule, chosen by the database and never mixed on one database: on
PostgreSQL `_record_with_function` makes the whole of it one call of the function
`sessions_app_record_inbound` (migration 0007): one round trip, no ORM query building, which is
most of what an inbound webhook costs. Elsewhere (SQLite) `_record_with_orm` runs the same steps as
ORM queries. Both build their rows from the same `_new_session` and `_new_message`, log the same
lines and fire the same signal; the whole test suite runs against each (docs/ingest.md).
"""

from __future__ import annotations

import functools
import json
import logging
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, TypeVar

import orjson
from django.db import DEFAULT_DB_ALIAS, IntegrityError, connection, models, transaction
from django.db.models import F
from django.db.models.base import ModelState
from django.db.models.signals import post_delete, post_init, post_save, pre_init
from django.utils import timezone

from sessions_app.events import announce_message
from sessions_app.models import (
    OPEN_GROUP,
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
from sessions_app.privacy.fields import EncryptedJSONField

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
    cached = cached_channel(kind, address)
    if cached is not None:
        return cached
    key = (kind, address)
    channel = _load_or_provision_channel(kind, address)
    # Remembered only once committed: a channel provisioned by a transaction that then rolls back
    # (a database error, a test) must not outlive it here.
    remembered = _clone(channel)
    transaction.on_commit(lambda: _remember_channel(key, remembered))
    return channel


def cached_channel(kind: str, address: str = "") -> Channel | None:
    """This process's copy of the channel, while it is fresh; None when it must be read again."""
    cached = _channels.get((kind, address))
    # Also stale when the clock went back: the age is bounded either way.
    if cached is not None and timedelta(0) <= timezone.now() - cached[0] < CHANNEL_CACHE_TTL:
        return _clone(cached[1])
    return None


def _clone(channel: Channel) -> Channel:
    """A copy callers may change without changing the cache: the same field values in a new
    instance with its own state. Not `copy.copy` (pickling's protocol) nor `from_db` (the model's
    constructor and its two signals): on every inbound message, either cost several times this."""
    clone = Channel.__new__(Channel)
    clone.__dict__.update(channel.__dict__)
    clone._state = ModelState()  # its own, with no related objects shared with the cache
    clone._state.db, clone._state.adding = channel._state.db, False
    return clone


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
    # The group lets `session_open_reuse_lookup` serve it: the index knows groups, not statuses.
    active = Session.objects.filter(
        channel=channel, contact=contact, status_group=OPEN_GROUP, status=SessionStatus.ACTIVE
    )
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
    if connection.vendor == "postgresql":
        return _record_with_function(
            channel,
            inbound,
            contact=contact,
            session_defaults=session_defaults or {},
            preferred_session_id=preferred_session_id,
        )
    return _record_with_orm(channel, contact, inbound, session_defaults or {}, preferred_session_id)


def _record_with_orm(
    channel: Channel,
    contact: Contact,
    inbound: InboundMessage,
    session_defaults: Mapping[str, Any],
    preferred_session_id: Any | None,
) -> IngestResult:
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
            session = _new_session(channel, contact, now, session_defaults)
            session.save(force_insert=True)
            _log_opened(channel, session, contact)

        message = _new_message(inbound, now)
        message.session = session
        message.save(force_insert=True)
        announce_message(session, message, created_session=created, reply_owed=inbound.expects_reply)
    return IngestResult(session, message, created_session=created, duplicate=False)


def _new_session(channel: Channel, contact: Contact, now: datetime, defaults: Mapping[str, Any]) -> Session:
    """The session the rule opens for `contact` when it reuses none (not saved)."""
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
    return _build(
        Session,
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


def _new_message(inbound: InboundMessage, now: datetime) -> Message:
    return _build(
        Message,
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


_M = TypeVar("_M", bound=models.Model)


@dataclass(frozen=True)
class _Layout:
    """A model's concrete fields in constructor order, with their defaults resolved once."""

    attnames: tuple[str, ...]
    index: dict[str, int]  # attname -> position
    relations: frozenset[str]  # foreign keys by name, given as instances
    defaults: tuple[Any, ...]
    per_row_defaults: tuple[tuple[int, str, Callable[[], Any]], ...]  # callables: uuid4, now, dict


def _stored_fields(model: type[models.Model]) -> list[models.Field[Any, Any]]:
    # Not the generated ones (`Session.status_group`): the database computes them, and an instance
    # built here leaves them deferred, loaded if someone reads them.
    return [field for field in model._meta.concrete_fields if not field.generated]


@functools.cache
def _layout(model: type[models.Model]) -> _Layout:
    index: dict[str, int] = {}
    relations: set[str] = set()
    defaults: list[Any] = []
    per_row: list[tuple[int, str, Callable[[], Any]]] = []
    for position, model_field in enumerate(_stored_fields(model)):
        index[model_field.attname] = position
        if model_field.is_relation:
            relations.add(model_field.name)
        if model_field.has_default() and callable(model_field.default):
            per_row.append((position, model_field.attname, model_field.default))
            defaults.append(None)
        else:
            defaults.append(model_field.get_default())
    return _Layout(tuple(index), index, frozenset(relations), tuple(defaults), tuple(per_row))


def _build(model: type[_M], **values: Any) -> _M:
    """A new, unsaved instance, with the defaults resolved once per model. The keyword form of
    the constructor looks every field up and asks it for its default, which cost about a tenth of
    an inbound message's CPU across the three rows built."""
    layout = _layout(model)
    row = list(layout.defaults)
    for position, attname, make in layout.per_row_defaults:
        if attname not in values:
            row[position] = make()
    related = {}
    for name, value in values.items():
        if name in layout.relations:
            related[name] = value  # through the descriptor, which sets the id and caches the object
        else:
            row[layout.index[name]] = value
    instance = _instance(model, layout.attnames, row, db=None)
    for name, value in related.items():
        setattr(instance, name, value)
    return instance


def _instance(model: type[_M], attnames: Sequence[str], values: Sequence[Any], *, db: str | None) -> _M:
    """An instance holding `values` for `attnames` (the rest deferred, as `from_db` leaves them),
    loaded from `db`, or new when `db` is None.

    What the model's constructor does with positional values, without its generic path and its
    `pre_init`/`post_init` signals: none of these models has a listener, and on every inbound
    message the constructor cost ~25 µs an instance under load (the four built came to ~5 % of a
    web worker's CPU). Should a listener ever be connected, the constructor runs as before.
    """
    if pre_init.has_listeners(model) or post_init.has_listeners(model):
        if db is None:
            return model(**dict(zip(attnames, values, strict=True)))
        return model.from_db(db, list(attnames), list(values))
    instance = model.__new__(model)
    # Straight into the instance's dict, as the constructor's setattr does: the fields' descriptors
    # that take part in setting (foreign keys, the encrypted metadata) only write the same key,
    # after dropping a cached related object that a new instance cannot have.
    instance.__dict__.update(zip(attnames, values, strict=True))
    state = instance._state = ModelState()
    if db is not None:
        state.db, state.adding = db, False
    return instance


def _log_opened(channel: Channel, session: Session, contact: Contact) -> None:
    log.info(
        "Created new %s session %s for %s",
        ChannelKind(channel.kind).label,  # not get_kind_display(), which rebuilds its choices each call
        session.pk,
        mask_phone(contact.phone) if contact.phone else f"contact {contact.pk}",
    )


# --- PostgreSQL: the same rule as one function call (migration 0007) ---------------------------

# What the function returns of the session it used, in order; the rest of the row is loaded only
# if someone reads it (Django's deferred fields), which the webhooks and the signal's listeners don't.
_RETURNED_SESSION_FIELDS = (
    "id",
    "external_id",
    "channel_kind",
    "business_id",
    "location_id",
    "owner_id",
    "agent_id",
    "title",
    "status",
    "mission_id",
    "message_count",
    "first_message_at",
    "last_message_at",
    "last_activity_at",
    "status_changed_at",
    "created_at",
    "updated_at",
)
_CALL = (
    "SELECT * FROM sessions_app_record_inbound(%s::bigint, %s::interval, %s::timestamptz, %s::bigint, "
    "%s::jsonb, %s, %s, %s, %s, %s::uuid, %s::jsonb, %s::jsonb)"
)


@dataclass(frozen=True)
class PhoneSender:
    """Who sent a phone message, when the contact is found or created inside the function."""

    phone: str
    whatsapp_id: str = ""
    profile_name: str = ""


def _record_with_function(
    channel: Channel,
    inbound: InboundMessage,
    *,
    contact: Contact | None = None,
    sender: PhoneSender | None = None,
    session_defaults: Mapping[str, Any] | None = None,
    preferred_session_id: Any | None = None,
) -> IngestResult:
    now = timezone.now()
    if contact is None:
        assert sender is not None
        new_contact = _build(
            Contact,
            phone=sender.phone,
            whatsapp_id=sender.whatsapp_id,
            whatsapp_profile_name=sender.profile_name,
            created_at=now,
            updated_at=now,
        )
        session = _new_session(channel, new_contact, now, session_defaults or {})
        contact_row = _row_json(new_contact)
    else:
        session = _new_session(channel, contact, now, session_defaults or {})
        contact_row = None
    message = _new_message(inbound, now)
    params: list[Any] = [
        channel.pk,
        channel.effective_reuse_window,
        now,
        contact.pk if contact is not None else None,
        contact_row,
        sender.whatsapp_id if sender else "",
        sender.profile_name if sender else "",
        inbound.provider,
        inbound.external_id or None,
        preferred_session_id,
        _row_json(session),
        _row_json(message),
    ]
    with connection.cursor() as cursor:  # `connection` is the default database's, DEFAULT_DB_ALIAS
        cursor.execute(_CALL, params)
        row = cursor.fetchone()
    outcome, gap, contact_id, message_id, *session_values = row
    if outcome == "duplicate":
        existing = Message.objects.select_related("session").get(pk=message_id)
        log.info("Duplicate delivery of message %s ignored", existing.pk)
        return IngestResult(existing.session, existing, created_session=False, duplicate=True)

    if contact is None:
        assert sender is not None
        contact = _instance(
            Contact, ("id", "phone", "external_user_id"), (contact_id, sender.phone, ""), db=DEFAULT_DB_ALIAS
        )
    created = outcome not in ("named", "reused")
    if outcome == "named":
        log.info("Reusing session %s (named by the client)", session_values[0])
    elif outcome == "reused":
        log.info("Reusing session %s (last message %ss ago)", session_values[0], int(gap))
    elif outcome == "gap":
        log.info("Time gap of %ss detected. Creating new session.", int(gap))
    if created:
        session.contact = contact
        session._state.adding = False
        session._state.db = DEFAULT_DB_ALIAS
        _log_opened(channel, session, contact)
    else:
        session = _instance(Session, _RETURNED_SESSION_FIELDS, session_values, db=DEFAULT_DB_ALIAS)
        session.channel = channel
        session.contact = contact
    message.pk = message_id
    message.session = session
    message._state.adding = False
    message._state.db = DEFAULT_DB_ALIAS
    announce_message(session, message, created_session=created, reply_owed=inbound.expects_reply)
    return IngestResult(session, message, created_session=created, duplicate=False)


def _json_value(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, uuid.UUID):
        return str(value)
    raise TypeError(f"cannot pass {type(value).__name__} to the ingest function")


def _stored_form(field: models.Field[Any, Any]) -> Callable[[Any], Any] | None:
    """How `field`'s value is stored, when that is not the Python value itself (JSON can carry
    strings, numbers, lists and dicts as they are; datetimes and UUIDs become text on the way)."""
    if isinstance(field, EncryptedJSONField):
        return field.get_prep_value  # the encrypted token
    if isinstance(field, models.JSONField):
        return None  # a nested JSON value, which jsonb_populate_record takes as is
    if isinstance(field, models.DateTimeField | models.UUIDField | models.ForeignKey):
        return None  # datetimes and UUIDs are written by `_json_value`; a foreign key is its id
    if isinstance(field, models.CharField | models.TextField | models.IntegerField | models.BooleanField):
        return None
    return lambda value: field.get_db_prep_save(value, connection)


@functools.cache
def _columns(model: type[models.Model]) -> list[tuple[str, str, bool, Callable[[Any], Any] | None]]:
    return [
        (str(field.column), field.attname, field.primary_key, _stored_form(field))
        for field in _stored_fields(model)
    ]


def _row_values(instance: models.Model) -> dict[str, Any]:
    """`instance` as the object `jsonb_populate_record` reads: column → value as stored."""
    values = {}
    fields = instance.__dict__  # every concrete field of an instance built here is set, so no descriptors
    for column, attname, primary_key, stored in _columns(type(instance)):
        value = fields[attname]
        if primary_key and value is None:
            continue  # the database assigns it
        values[column] = value if stored is None or value is None else stored(value)
    return values


def _row_json(instance: models.Model) -> str:
    return _json_text(_row_values(instance))


def _json_text(values: dict[str, Any]) -> str:
    try:
        # orjson writes datetimes and UUIDs as `_json_value` does, in a fifth of the time of the
        # standard library's encoder: a few percent of an inbound message's CPU (docs/ingest.md).
        return orjson.dumps(values).decode()
    except TypeError:  # a type it does not know, or an integer beyond 64 bits
        return json.dumps(values, default=_json_value)


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
    if log.isEnabledFor(logging.DEBUG):  # spares every webhook the masking when debug is off
        label = ChannelKind(kind).label
        log.debug("%s received from %s to %s", label, mask_phone(from_phone), mask_phone(to))
    if connection.vendor == "postgresql":
        sender = PhoneSender(from_phone, whatsapp_id=whatsapp_id, profile_name=profile_name)
        channel = cached_channel(kind, to)
        if channel is not None:
            # One statement in autocommit: the function is its own transaction, all or nothing.
            return _record_with_function(channel, inbound, sender=sender)
        with transaction.atomic():  # a channel provisioned now commits with this message or not at all
            return _record_with_function(channel_for(kind, to), inbound, sender=sender)
    with transaction.atomic():
        channel = channel_for(kind, to)
        contact = contact_for_phone(from_phone, whatsapp_id=whatsapp_id, profile_name=profile_name)
        return _record_with_orm(channel, contact, inbound, {}, None)
