"""Where a session ends, decided by staff after the fact: merge two sessions into one, split one in two.

The reuse rule (`ingest/record_inbound.sql`) draws a session's boundaries as messages arrive; these
move them later. Each is one transaction that takes the lock the rule takes for the (channel,
contact) pair (`sessions_app_lock_pair`) and then the sessions' rows, in one order (the pair's lock
first, rows by id), so a message arriving meanwhile waits and then lands where the new boundaries
put it, and two merges of the same sessions never deadlock. Status changes go through
`lifecycle.transitions`; sockets hear of it once committed (`realtime.publish`).
docs/session-boundaries.md says why it works this way.
"""

from __future__ import annotations

import logging
from typing import Any

from django.db import connection, transaction
from django.db.models import Count, Max, Min, Q
from django.utils import timezone

from sessions_app.lifecycle.transitions import record_boundary_change, transition_session
from sessions_app.models import Message, Session, SessionStatus
from sessions_app.realtime import publish

log = logging.getLogger(__name__)


class BoundaryRefused(Exception):
    """A merge or split that cannot be done; `conflict`: refused because of the sessions' current
    state (a 409), not because of what was asked (a 400). `field` names the input at fault."""

    def __init__(self, message: str, *, code: str, field: str | None = None, conflict: bool = False) -> None:
        super().__init__(message)
        self.code = code
        self.field = field
        self.conflict = conflict


def _lock_pair(session: Session) -> None:
    if session.contact_id is not None:
        with connection.cursor() as cursor:
            cursor.execute("SELECT sessions_app_lock_pair(%s, %s)", [session.channel_id, session.contact_id])


def _locked(*ids: Any) -> dict[Any, Session]:
    """The sessions' rows, locked in id order (the one order every merge locks them in)."""
    rows = Session.objects.select_for_update().filter(pk__in=ids).order_by("pk")
    return {session.pk: session for session in rows}


def _move(messages: Any, to: Session, *sessions: Session) -> int:
    """Move `messages` into `to` in one statement; then refresh each session's search document once
    (the per-row trigger stays out meanwhile: sessions_app/search/document.sql)."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT set_config('sessions_app.moving_messages', 'on', true)")
        moved = messages.update(session=to)
        cursor.execute("SELECT set_config('sessions_app.moving_messages', 'off', true)")
        cursor.execute("SELECT session_search_refresh(%s::uuid[])", [[s.pk for s in sessions]])
    return moved


def _recount(session: Session, *, last_activity_at: Any = None) -> None:
    """Counters and first/last message times from the session's messages as they now are."""
    stats = Message.objects.filter(session=session).aggregate(
        count=Count("id"), first=Min("created_at"), last=Max("created_at")
    )
    session.message_count = stats["count"]
    session.first_message_at = stats["first"]
    session.last_message_at = stats["last"]
    if last_activity_at is not None:
        session.last_activity_at = last_activity_at
    session.updated_at = timezone.now()
    session.save(
        update_fields=[
            "message_count",
            "first_message_at",
            "last_message_at",
            "last_activity_at",
            "updated_at",
        ]
    )


def _check_mergeable(source: Session, target: Session) -> None:
    if source.pk == target.pk:
        raise BoundaryRefused("A session cannot be merged into itself.", code="same_session", field="into")
    if source.contact_id != target.contact_id or source.contact_id is None:
        raise BoundaryRefused(
            "Both sessions must belong to the same contact.", code="different_contacts", field="into"
        )
    if source.channel_id != target.channel_id:
        raise BoundaryRefused(
            "Both sessions must be on the same channel.", code="different_channels", field="into"
        )
    for session, role in ((source, "This session"), (target, "The target session")):
        if session.status == SessionStatus.MERGED:
            raise BoundaryRefused(
                f"{role} was already merged into session {session.merged_into_id}.",
                code="already_merged",
                conflict=True,
            )


def merge_sessions(source: Session, target: Session, *, actor: str) -> Session:
    """Move every message of `source` into `target` (they keep their times, so the thread reads in
    time order), recompute `target`'s counters, and mark `source` merged into it. Both get a
    StatusChange naming the other. Returns `target` as stored. Raises `BoundaryRefused`."""
    _check_mergeable(source, target)
    with transaction.atomic():
        _lock_pair(source)
        rows = _locked(source.pk, target.pk)
        source, target = rows[source.pk], rows[target.pk]
        _check_mergeable(source, target)  # as locked: a concurrent merge may have won
        moved = _move(Message.objects.filter(session=source), target, source, target)
        _recount(target, last_activity_at=max(source.last_activity_at, target.last_activity_at))
        _recount(source)
        transition_session(
            source,
            SessionStatus.MERGED,
            actor=actor,
            reason=f"merged into session {target.pk}",
            merged_into=target,
        )
        record_boundary_change(target, actor=actor, reason=f"session {source.pk} merged into this one")
        log.info("Session %s merged into %s by %s (%s messages moved)", source.pk, target.pk, actor, moved)
        payload = {"mergedFrom": str(source.pk), "mergedInto": str(target.pk), "moved": moved}
        ids = [source.pk, target.pk]
        transaction.on_commit(lambda: publish.sessions_reshaped("session_merged", ids, payload), robust=True)
    target.refresh_from_db()
    return target


def split_session(session: Session, message_id: int, *, actor: str) -> Session:
    """Cut `session` before message `message_id`: that message and every later one (by time, then
    id) move to a new session of the same contact, channel and context, which takes the session's
    status. Counters on both are recomputed; both get a StatusChange naming the other. Returns the
    new session. Raises `BoundaryRefused` (the first message cannot be split off: nothing would stay)."""
    with transaction.atomic():
        _lock_pair(session)
        current = _locked(session.pk)[session.pk]
        if current.status == SessionStatus.MERGED:
            raise BoundaryRefused(
                f"This session was merged into session {current.merged_into_id}; it has no messages.",
                code="already_merged",
                conflict=True,
            )
        cut = Message.objects.filter(session=current, pk=message_id).first()
        if cut is None:
            raise BoundaryRefused(
                f"Message {message_id} is not in this session.", code="not_in_session", field="message_id"
            )
        first = Message.objects.filter(session=current).order_by("created_at", "id").first()
        if first is not None and first.pk == cut.pk:
            raise BoundaryRefused(
                f"Message {message_id} is the session's first: split at a later message.",
                code="first_message",
                field="message_id",
            )
        now = timezone.now()
        new = Session.objects.create(
            channel_id=current.channel_id,
            channel_kind=current.channel_kind,
            contact_id=current.contact_id,
            business_id=current.business_id,
            location_id=current.location_id,
            owner_id=current.owner_id,
            agent_id=current.agent_id,
            title=current.title,
            description=current.description,
            thumbnail_url=current.thumbnail_url,
            status=current.status,
            metadata=dict(current.metadata or {}),
            mission_id=current.mission_id,
            last_activity_at=current.last_activity_at,
            status_changed_at=now,
            created_at=now,
            updated_at=now,
        )
        later = Message.objects.filter(session=current).filter(
            Q(created_at__gt=cut.created_at) | Q(created_at=cut.created_at, id__gte=cut.pk)
        )
        moved = _move(later, new, current, new)
        _recount(new)
        _recount(current)
        # The earlier part's activity ended with its last message; the later part keeps the latest.
        current.last_activity_at = current.last_message_at or current.last_activity_at
        current.save(update_fields=["last_activity_at"])
        record_boundary_change(
            current, actor=actor, reason=f"split: message {cut.pk} and later moved to session {new.pk}"
        )
        record_boundary_change(
            new, actor=actor, reason=f"split from session {current.pk} at message {cut.pk}"
        )
        log.info(
            "Session %s split at message %s into %s by %s (%s moved)",
            current.pk,
            cut.pk,
            new.pk,
            actor,
            moved,
        )
        payload = {"splitFrom": str(current.pk), "splitInto": str(new.pk), "moved": moved}
        ids = [current.pk, new.pk]
        transaction.on_commit(lambda: publish.sessions_reshaped("session_split", ids, payload), robust=True)
    return new
