"""Session status transitions: the one function every entry point calls to change a status.

It knows which moves are allowed, refuses the rest with a message that says why, and records
every change (who or what, when, from, to) as a `StatusChange` row.
"""

from __future__ import annotations

import logging

from django.db import transaction
from django.utils import timezone

from sessions_app.events import session_status_changed
from sessions_app.models import Session, SessionStatus, StatusChange

log = logging.getLogger(__name__)

S = SessionStatus

ALLOWED_TRANSITIONS: dict[str, frozenset[str]] = {
    S.ACTIVE: frozenset({S.CLOSED, S.RESOLVED, S.COMPLETED, S.ABANDONED, S.ARCHIVED}),
    S.CLOSED: frozenset({S.ACTIVE, S.RESOLVED, S.ARCHIVED}),
    S.RESOLVED: frozenset({S.ACTIVE, S.CLOSED, S.ARCHIVED}),
    S.COMPLETED: frozenset({S.ACTIVE, S.ARCHIVED}),
    S.ABANDONED: frozenset({S.ACTIVE, S.CLOSED, S.RESOLVED, S.ARCHIVED}),
    S.ARCHIVED: frozenset({S.ACTIVE}),
}


class TransitionRefused(Exception):
    """A status change the lifecycle does not allow; the message says which and why."""

    def __init__(self, session: Session, from_status: str, to_status: str) -> None:
        allowed = sorted(ALLOWED_TRANSITIONS.get(from_status, ()))
        self.session = session
        self.from_status = from_status
        self.to_status = to_status
        super().__init__(
            f"{'An' if from_status[0] in 'aeiou' else 'A'} {from_status} session cannot become {to_status}; "
            f"from {from_status} it can become: {', '.join(allowed) or 'nothing'}."
        )


def allowed_targets(status: str) -> frozenset[str]:
    return ALLOWED_TRANSITIONS.get(status, frozenset())


def transition_session(session: Session, to_status: str, *, actor: str, reason: str = "") -> Session:
    """Move `session` to `to_status`, or raise `TransitionRefused`.

    Moving to the status a session already has is a no-op (so a retried "close" succeeds).
    Returns the session as stored after the change.
    """
    if to_status not in SessionStatus.values:
        raise ValueError(f"unknown status {to_status!r}; one of {', '.join(SessionStatus.values)}")
    with transaction.atomic():
        current = Session.objects.select_for_update().get(pk=session.pk)
        if current.status == to_status:
            return current
        if to_status not in ALLOWED_TRANSITIONS[current.status]:
            raise TransitionRefused(current, current.status, to_status)
        from_status = current.status
        now = timezone.now()
        current.status = to_status
        current.status_changed_at = now
        current.updated_at = now
        current.save(update_fields=["status", "status_changed_at", "updated_at"])
        StatusChange.objects.create(
            session=current, from_status=from_status, to_status=to_status, actor=actor, reason=reason[:255]
        )
        log.info("Session %s: %s → %s by %s", current.pk, from_status, to_status, actor)
        transaction.on_commit(
            lambda: session_status_changed.send(
                sender=Session, session_id=current.pk, from_status=from_status, to_status=to_status
            ),
            robust=True,
        )
    session.status = current.status
    session.status_changed_at = current.status_changed_at
    session.updated_at = current.updated_at
    return current
