"""Session status transitions: the one function every entry point calls to change a status.

It knows which moves are allowed, refuses the rest with a message that says why, and records
every change (who or what, when, from, to) as a `StatusChange` row.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

from django.db import connection, transaction
from django.utils import timezone

from sessions_app.events.models import EventType
from sessions_app.events.record import EventSpec, record_events, record_status_changes, wanted
from sessions_app.models import Session, SessionStatus, StatusChange
from sessions_app.realtime import publish

log = logging.getLogger(__name__)

S = SessionStatus

# Merged from every other status (staff join two sessions whatever their state: `merge_sessions` in
# lifecycle/boundaries.py, the only caller that may name it), and nothing after: a merged session is
# an empty pointer to the session that holds its messages.
ALLOWED_TRANSITIONS: dict[str, frozenset[str]] = {
    S.ACTIVE: frozenset({S.CLOSED, S.RESOLVED, S.COMPLETED, S.ABANDONED, S.ARCHIVED, S.MERGED}),
    S.CLOSED: frozenset({S.ACTIVE, S.RESOLVED, S.ARCHIVED, S.MERGED}),
    S.RESOLVED: frozenset({S.ACTIVE, S.CLOSED, S.ARCHIVED, S.MERGED}),
    S.COMPLETED: frozenset({S.ACTIVE, S.ARCHIVED, S.MERGED}),
    # Completed too: seed 002's client completes its session on logout, however long it was quiet.
    S.ABANDONED: frozenset({S.ACTIVE, S.CLOSED, S.RESOLVED, S.COMPLETED, S.ARCHIVED, S.MERGED}),
    S.ARCHIVED: frozenset({S.ACTIVE, S.MERGED}),
    S.MERGED: frozenset(),
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


def transition_session(
    session: Session,
    to_status: str,
    *,
    actor: str,
    reason: str = "",
    merged_into: Session | None = None,
) -> Session:
    """Move `session` to `to_status`, or raise `TransitionRefused`.

    Moving to the status a session already has is a no-op (so a retried "close" succeeds).
    Returns the session as stored after the change. `merged_into` goes with status `merged` and
    only with it: the session whose messages this one's became (lifecycle/boundaries.py moves them).
    """
    if to_status not in SessionStatus.values:
        raise ValueError(f"unknown status {to_status!r}; one of {', '.join(SessionStatus.values)}")
    if (to_status == S.MERGED) != (merged_into is not None):
        raise ValueError("status merged needs merged_into, and merged_into needs status merged")
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
        fields = ["status", "status_changed_at", "updated_at"]
        if merged_into is not None:
            current.merged_into = merged_into
            fields.append("merged_into")
        current.save(update_fields=fields)
        StatusChange.objects.create(
            session=current, from_status=from_status, to_status=to_status, actor=actor, reason=reason[:255]
        )
        record_events(
            current.pk,
            [
                EventSpec(
                    EventType.SESSION_STATUS_CHANGED,
                    extra={"from": from_status, "to": to_status, "actor": actor},
                )
            ],
        )
        log.info("Session %s: %s → %s by %s", current.pk, from_status, to_status, actor)
        transaction.on_commit(lambda: publish.status_changed(current.pk, from_status, to_status), robust=True)
    session.status = current.status
    session.status_changed_at = current.status_changed_at
    session.updated_at = current.updated_at
    session.merged_into_id = current.merged_into_id
    return current


def record_boundary_change(session: Session, *, actor: str, reason: str) -> StatusChange:
    """A StatusChange that keeps the status (from and to are the session's current one): staff merged
    another session into this one or split this one (lifecycle/boundaries.py), and its history
    says so, naming the other session. Call it inside the transaction that made the change."""
    return StatusChange.objects.create(
        session=session,
        from_status=session.status,
        to_status=session.status,
        actor=actor,
        reason=reason[:255],
    )


def sources_for(to_status: str, from_statuses: Iterable[str]) -> list[str]:
    """The statuses in `from_statuses` from which `to_status` is an allowed move (sorted)."""
    # Plain str: psycopg would send an enum member's name, not its value.
    return sorted(str(s) for s in from_statuses if to_status in ALLOWED_TRANSITIONS.get(s, frozenset()))


def transition_sessions_batch(
    *,
    from_statuses: Iterable[str],
    to_status: str,
    inactive_before: datetime,
    actor: str,
    reason: str = "",
    inactive_since: datetime | None = None,
    channel_ids: Sequence[int] | None = None,
    exclude_channel_ids: Sequence[int] = (),
    limit: int = 5000,
    counted_from: str = "last_activity_at",
) -> MovedCounts:
    """Move at most `limit` sessions in `from_statuses` whose last activity is before `inactive_before`
    (and not before `inactive_since`, when given) to `to_status`, oldest first, recording one
    `StatusChange` each; returns how many moved from each source status (only the statuses something
    moved from).

    The set-based sibling of `transition_session`, for the lifecycle sweep: the same
    `ALLOWED_TRANSITIONS` decide which source statuses may move, and each statement is its own
    short transaction. Rows another transaction holds (an inbound message bumping the session right now)
    are skipped, not waited for, and the status and time predicates are re-checked on the locked
    rows, so a session that just received a message is never moved. Call it until the counts add
    up to fewer than `limit`, each time from the `reached` of the call before.

    `counted_from` is the time the thresholds count from: `last_activity_at` (quiet sessions) or
    `status_changed_at` (how long ago a session ended; the archive step, for every surface).
    """
    if to_status not in SessionStatus.values:
        raise ValueError(f"unknown status {to_status!r}; one of {', '.join(SessionStatus.values)}")
    if to_status == S.MERGED:
        raise ValueError("sessions are merged one at a time, into a session (lifecycle/boundaries.py)")
    if counted_from not in COUNTED_FROM:
        raise ValueError(f"counted_from must be one of {', '.join(COUNTED_FROM)}, not {counted_from!r}")
    to_status = str(to_status)
    sources = sources_for(to_status, from_statuses)
    if not sources or (channel_ids is not None and not channel_ids):
        return MovedCounts()
    now = timezone.now()
    moved = _batch(
        sources,
        to_status,
        inactive_since or BEGINNING,
        inactive_before,
        actor,
        reason,
        channel_ids,
        exclude_channel_ids,
        limit,
        now,
        counted_from,
    )
    total = sum(moved.values())
    if total:
        log.info("%s session(s) → %s by %s", total, to_status, actor)
        transaction.on_commit(lambda: _announce(total, to_status), robust=True)
    return moved


def _announce(count: int, to_status: str) -> None:
    # One event per batch, not per session: a sweep moves thousands at a time, and the staff pages'
    # live updates need to know that sessions moved, not to be told each one.
    publish.sessions_swept(count, to_status)


# One statement per source status: claim the oldest due rows, walking the (status, last activity)
# index and skipping any row another transaction holds; move exactly the claimed rows, found by
# their ctid (a TID scan: no index descent per row; the row lock keeps each where it is until the
# statement ends); write their StatusChange rows. FOR UPDATE re-checks the status and time
# predicates on the newest version of each row as it locks it, and the lock lasts until the
# statement commits, so nothing can change a claimed row in between. Only the count and the newest
# claimed last activity come back: the caller's next batch starts there (keyset), and the ids
# themselves are most of the client's work at a backlog's size.
#
# The status is a range of one value and leads the ORDER BY so that only `session_status_recent`
# can deliver the order. With `status = …` the planner may walk `session_recent` (last activity
# alone) from its oldest end and filter instead: it takes status and age to be independent, while
# the oldest sessions are exactly the ones that ended (1.6 s a batch with 400,000 ended; docs/sweep.md
# "Stop 15").
_BATCH_SQL = """
WITH picked AS (
    SELECT ctid, id, {counted_from} AS counted_from FROM {session}
    WHERE status >= %(source)s AND status <= %(source)s
      AND {counted_from} >= %(since)s AND {counted_from} < %(before)s {channel_filter}
    ORDER BY status DESC, {counted_from}, id
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
), moved AS (
    UPDATE {session}
    SET status = %(to)s, status_changed_at = %(now)s, updated_at = %(now)s{sequence}
    WHERE ctid = ANY(ARRAY(SELECT ctid FROM picked))
    RETURNING id{returning}
), recorded AS (
    INSERT INTO {change} (session_id, from_status, to_status, actor, reason, created_at)
    SELECT id, %(source)s, %(to)s, %(actor)s, %(reason)s, %(now)s FROM moved
    RETURNING 1
)
SELECT (SELECT count(*) FROM recorded), (SELECT max(counted_from) FROM picked){events}
"""

# With subscribers to `session.status_changed`, the batch also takes each moved session's next event
# sequence in the same UPDATE and returns the ids and numbers, for `record_status_changes` to write
# the events in the batch's transaction (sessions_app/events/record.py).
_EVENTS_PARTS = {
    "sequence": ", event_sequence = event_sequence + 1",
    "returning": ", event_sequence",
    "events": ", ARRAY(SELECT id FROM moved), ARRAY(SELECT event_sequence FROM moved)",
}
_NO_EVENTS_PARTS = dict.fromkeys(_EVENTS_PARTS, "")

# The columns a batch may count its threshold from: the claim walks (status, column) in order, and
# `session_status_recent` / `session_status_changed` are those indexes.
COUNTED_FROM = ("last_activity_at", "status_changed_at")

# The start of time for a claim with no lower bound: a real timestamp (psycopg sends no -infinity).
BEGINNING = datetime(1, 1, 1, tzinfo=UTC)


class MovedCounts(dict[str, int]):
    """How many sessions moved from each source status; `reached` is the newest counted-from time among
    the sessions claimed (for a call with one source status), where the next batch may start."""

    reached: datetime | None = None


def batch_sql(
    channel_filter: str = "",
    *,
    session_table: str = "",
    change_table: str = "",
    counted_from: str = "last_activity_at",
    events: bool = False,
) -> str:
    """The batch statement, with `channel_filter` (SQL text, or "") added to the claim; `events`: the
    variant that takes event sequences too.

    Other tables than the models' are for the sweep benchmark's yardstick (bench/sweep.py), which
    runs this very statement on the least a session table can be."""
    return _BATCH_SQL.format(
        session=session_table or Session._meta.db_table,
        change=change_table or StatusChange._meta.db_table,
        channel_filter=channel_filter,
        counted_from=counted_from,
        **(_EVENTS_PARTS if events else _NO_EVENTS_PARTS),
    )


def _batch(
    sources: list[str],
    to_status: str,
    since: datetime,
    before: datetime,
    actor: str,
    reason: str,
    channel_ids: Sequence[int] | None,
    exclude_channel_ids: Sequence[int],
    limit: int,
    now: datetime,
    counted_from: str,
) -> MovedCounts:
    channel_filter = ""
    params: dict[str, Any] = {
        "since": since,
        "before": before,
        "to": to_status,
        "now": now,
        "actor": actor,
        "reason": reason[:255],
    }
    if channel_ids is not None:
        channel_filter += " AND channel_id = ANY(%(channel_ids)s)"
        params["channel_ids"] = list(channel_ids)
    if exclude_channel_ids:
        channel_filter += " AND NOT (channel_id = ANY(%(exclude_ids)s))"
        params["exclude_ids"] = list(exclude_channel_ids)
    events = wanted(EventType.SESSION_STATUS_CHANGED)
    sql = batch_sql(channel_filter, counted_from=counted_from, events=events)
    # Don't wait for the WAL flush at commit when the batch is a transaction of its own: a batch lost
    # in a crash is lost whole, StatusChange rows with their moves, and is simply due again at the
    # next sweep (docs/sweep.md). Inside a caller's transaction the caller decides.
    relaxed = not connection.in_atomic_block
    moved = MovedCounts()
    left = limit
    for source in sources:
        if left <= 0:
            break
        with transaction.atomic(), connection.cursor() as cursor:
            if relaxed:
                cursor.execute("SET LOCAL synchronous_commit = off")
            cursor.execute(sql, {**params, "source": source, "limit": left})
            count, reached, *moved_rows = cursor.fetchone()
            if events:
                ids, sequences = moved_rows
                record_status_changes(list(zip(ids, sequences, strict=True)), source, to_status, actor)
        if count:
            moved[source] = count
            left -= count
        if len(sources) == 1:
            moved.reached = reached
    return moved
