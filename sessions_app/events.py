"""Signals fired after a change has committed, so listeners (agent replies, live updates) never see
a row that a rollback later takes back."""

from django.dispatch import Signal

# kwargs: session_id, message_id, created_session (bool), reply_owed (bool), and the stored
# `session` and `message` instances, so listeners in the same process need not load them again
message_recorded = Signal()
# kwargs: session_id, from_status, to_status
session_status_changed = Signal()
# kwargs: count, to_status (one per batch of the lifecycle sweep)
sessions_swept = Signal()
