"""Signals fired after a change has committed, so listeners (agent replies, live updates) never see
a row that a rollback later takes back."""

from __future__ import annotations

from typing import TYPE_CHECKING

from django.db import transaction
from django.dispatch import Signal

if TYPE_CHECKING:
    from sessions_app.models import Message, Session

# kwargs: session_id, message_id, created_session (bool), reply_owed (bool), and the stored
# `session` and `message` instances, so listeners in the same process need not load them again
message_recorded = Signal()
# kwargs: session_id, from_status, to_status
session_status_changed = Signal()
# kwargs: count, to_status (one per batch of the lifecycle sweep)
sessions_swept = Signal()


def announce_message(session: Session, message: Message, *, created_session: bool, reply_owed: bool) -> None:
    """Fire `message_recorded` for `message` once the current transaction commits (now, if none)."""
    transaction.on_commit(
        lambda: message_recorded.send(
            sender=type(message),
            session_id=session.pk,
            message_id=message.pk,
            created_session=created_session,
            reply_owed=reply_owed,
            session=session,
            message=message,
        ),
        robust=True,
    )
