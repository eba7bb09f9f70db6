"""Session operations that are not messages or status changes: explicit create, metadata merge,
activity pings, mission links, delete. Each write is one transaction.

Messages go through `ingest.rule.record_inbound_message` (the reuse rule) and statuses through
`lifecycle.transitions.transition_session`; nothing here changes either (`edit_session` calls the
latter).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from django.db import IntegrityError, transaction
from django.utils import timezone

from sessions_app.agents.plain_summary import person_summary
from sessions_app.agents.summary import summarise
from sessions_app.events.models import EventType
from sessions_app.events.record import EventSpec, record_events
from sessions_app.ingest.rule import InboundMessage, IngestResult, record_inbound_message
from sessions_app.lifecycle.transitions import transition_session
from sessions_app.models import Channel, Contact, Session, SessionStatus

METADATA_MAX_BYTES = 16_384
EDITABLE_FIELDS = frozenset(
    {"title", "description", "thumbnail_url", "location_id", "agent_id", "mission_id", "business_id"}
)


class SessionIdTaken(Exception):
    """A client-supplied session id that another contact already uses."""


def check_metadata_size(metadata: Mapping[str, Any]) -> None:
    if len(json.dumps(metadata, default=str)) > METADATA_MAX_BYTES:
        raise ValueError(f"metadata is larger than {METADATA_MAX_BYTES} bytes as JSON")


def create_session(
    channel: Channel,
    contact: Contact,
    *,
    owner: Any = None,
    external_id: str | None = None,
    metadata: Mapping[str, Any] | None = None,
    **fields: Any,
) -> tuple[Session, bool]:
    """Open an empty session (no message yet). Returns (session, created).

    With `external_id`: asking again for the same contact returns the existing session (a retried
    create is harmless); the same id for another contact raises `SessionIdTaken`.
    """
    unknown = set(fields) - EDITABLE_FIELDS
    if unknown:
        raise TypeError(f"not session fields: {', '.join(sorted(unknown))}")
    with transaction.atomic():
        if external_id:
            existing = Session.objects.filter(external_id=external_id).first()
            if existing is not None:
                if existing.contact_id != contact.pk:
                    raise SessionIdTaken(external_id)
                return existing, False
        now = timezone.now()
        try:
            with transaction.atomic():
                session = Session.objects.create(
                    channel=channel,
                    channel_kind=channel.kind,
                    contact=contact,
                    owner=owner,
                    external_id=external_id or None,
                    metadata=dict(metadata or {}),
                    last_activity_at=now,
                    status_changed_at=now,
                    created_at=now,
                    updated_at=now,
                    **fields,
                )
        except IntegrityError:  # the same external id created concurrently
            existing = Session.objects.get(external_id=external_id)
            if existing.contact_id != contact.pk:
                raise SessionIdTaken(external_id) from None
            return existing, False
        record_events(session.pk, [EventSpec(EventType.SESSION_OPENED)])
    return session, True


def update_session(
    session: Session, *, metadata: Mapping[str, Any] | None = None, activity: bool = False, **fields: Any
) -> Session:
    """Change editable fields; `metadata` is merged key by key into the stored metadata.

    `activity`: the user did this (002's auto-save `PUT`, 000's `update`), so it counts as activity
    for the lifecycle: `last_activity_at` moves, even when nothing else changed.
    """
    unknown = set(fields) - EDITABLE_FIELDS
    if unknown:
        raise TypeError(f"not editable: {', '.join(sorted(unknown))}")
    with transaction.atomic():
        current = Session.objects.select_for_update().get(pk=session.pk)
        changed = []
        for name, value in fields.items():
            if getattr(current, name) != value:
                setattr(current, name, value)
                changed.append(name)
        if metadata:
            merged = {**current.metadata, **metadata}
            check_metadata_size(merged)
            current.metadata = merged
            changed.append("metadata")
        if activity:
            current.last_activity_at = timezone.now()
            changed.append("last_activity_at")
        if changed:
            current.updated_at = timezone.now()
            current.save(update_fields=[*changed, "updated_at"])
    return current


def touch_activity(session: Session) -> Session:
    """Record that the user is active in `session` (no message): moves `last_activity_at` only."""
    now = timezone.now()
    Session.objects.filter(pk=session.pk).update(last_activity_at=now, updated_at=now)
    session.last_activity_at = session.updated_at = now
    return session


def link_mission(session: Session, mission_id: str) -> Session:
    return update_session(session, mission_id=mission_id)


def refresh_summary(
    session: Session, *, fallback_title: str = "", fallback_description: str = "", activity: bool = False
) -> Session:
    """Store a title and description generated from the conversation by the agent backend, or the
    deterministic fallback (`agents/summary.py`).

    Call it outside a transaction: the backend's answer can take up to AGENT_TIMEOUT, and no row is
    locked while it is awaited; the write itself is one short transaction.
    """
    summary = summarise(session, fallback_title=fallback_title, fallback_description=fallback_description)
    return update_session(session, title=summary.title, description=summary.description, activity=activity)


def delete_session(session: Session) -> None:
    """Remove a session with its messages and status history (000's `delete`, the API's DELETE)."""
    with transaction.atomic():
        Session.objects.filter(pk=session.pk).delete()


def newest_active_session(queryset: Any) -> Session | None:
    return queryset.filter(status=SessionStatus.ACTIVE).order_by("-last_activity_at", "-id").first()


def edit_session(
    session: Session,
    *,
    actor: str,
    to_status: str | None = None,
    metadata: Mapping[str, Any] | None = None,
    activity: bool = False,
    **fields: Any,
) -> Session:
    """Fields, merged metadata and (through the lifecycle) a status change, all or nothing."""
    with transaction.atomic():
        current = update_session(session, metadata=metadata, activity=activity, **fields)
        if to_status is not None:
            current = transition_session(current, to_status, actor=actor)
    return current


def character_session(
    channel: Channel, contact: Contact, owner: Any, agent_id: str, *, actor: str
) -> tuple[Session, bool]:
    """A new session with character `agent_id` every time, as the upstream API does; the user's
    previous active session with that character is closed (through the lifecycle) in the same
    transaction. The contact row lock makes two concurrent opens queue: one session stays active."""
    with transaction.atomic():
        Contact.objects.select_for_update().filter(pk=contact.pk).first()
        previous = Session.objects.filter(
            owner=owner, agent_id=agent_id, channel=channel, contact=contact, status=SessionStatus.ACTIVE
        )
        for session in previous:
            transition_session(session, SessionStatus.CLOSED, actor=actor, reason="a new session was opened")
        return create_session(channel, contact, owner=owner, agent_id=agent_id)


def record_character_message(session: Session, text: str, *, actor: str) -> IngestResult:
    """A 004 `/chat` message in `session`: an ended session (abandoned, closed...) is reopened first,
    through the lifecycle, and the message joins it; the seed's client keeps one id per character
    and never asks for another, so its conversation goes on. One transaction."""
    assert session.contact is not None
    with transaction.atomic():
        if session.status != SessionStatus.ACTIVE:
            transition_session(
                session, SessionStatus.ACTIVE, actor=actor, reason="a new message in a character session"
            )
        return record_inbound_message(
            session.channel,
            session.contact,
            InboundMessage(content=text, metadata={"source": "http"}),
            session_defaults={"owner": session.owner, "agent_id": session.agent_id},
            preferred_session_id=session.pk,
        )


def person_summary_for(contact: Contact) -> tuple[str, str]:
    """000's deterministic title and description for a session without messages (never a constant)."""
    summary = person_summary(contact.display_name, contact.company, contact.phone or contact.name)
    return summary.title, summary.description


def open_summarized_session(channel: Channel, contact: Contact, *, external_id: str) -> tuple[Session, bool]:
    """000's create: the session and its generated title/description in one transaction."""
    with transaction.atomic():
        session, created = create_session(channel, contact, external_id=external_id)
        if created:
            # A new session has no messages: its summary is the deterministic one from who it is
            # with, and no backend is asked while this transaction is open.
            title, description = person_summary_for(contact)
            session = update_session(session, title=title, description=description)
    return session, created


def summarize_for_person(session: Session, contact: Contact) -> Session:
    """000's update: a summary from the conversation (the agent, else the deterministic fallback),
    or from who it is with while there are no messages; it counts as activity. Outside a
    transaction: the backend may take up to AGENT_TIMEOUT."""
    title, description = person_summary_for(contact)
    return refresh_summary(session, fallback_title=title, fallback_description=description, activity=True)
