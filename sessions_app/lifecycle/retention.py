"""Retention: archived sessions are deleted, with their messages, once SESSION_PURGE_AFTER has passed.

`purge_expired_sessions` is called by the lifecycle sweep. It works in bounded batches, each its
own short transaction, so it never holds locks for long however much has piled up; on PostgreSQL
a batch skips rows another purge (or a staff member reopening a session) holds, and the DELETE
re-checks the conditions, so a session reopened meanwhile is never deleted.
"""

from __future__ import annotations

import logging
from collections import Counter
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from sessions_app.models import Session, SessionStatus

log = logging.getLogger(__name__)

PURGE_BATCH_SIZE = 200


def purge_expired_sessions(now: datetime | None = None, *, batch_size: int = PURGE_BATCH_SIZE) -> int:
    """Delete archived sessions whose last activity is older than SESSION_PURGE_AFTER seconds.

    Returns how many sessions were deleted (their messages and status changes go with them).
    SESSION_PURGE_AFTER = 0 keeps everything.
    """
    keep_for: int = settings.SESSION_PURGE_AFTER
    if not keep_for:
        return 0
    cutoff = (now or timezone.now()) - timedelta(seconds=keep_for)
    expired = Session.objects.filter(status=SessionStatus.ARCHIVED, last_activity_at__lt=cutoff)
    sessions = 0
    rows: Counter[str] = Counter()
    while True:
        with transaction.atomic():
            ids = list(
                expired.select_for_update(skip_locked=True)
                .order_by("last_activity_at", "pk")
                .values_list("pk", flat=True)[:batch_size]
            )
            if not ids:
                break
            _, deleted = expired.filter(pk__in=ids).delete()
        sessions += deleted.get(Session._meta.label, 0)
        rows.update(deleted)
        if len(ids) < batch_size:
            break
    if sessions:
        log.info(
            "Purged %s archived sessions inactive for over %ss (%s)",
            sessions,
            keep_for,
            ", ".join(f"{count} {label}" for label, count in sorted(rows.items())),
        )
    return sessions
