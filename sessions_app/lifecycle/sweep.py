"""The lifecycle sweep: abandon quiet active sessions, archive old ended ones. Beat runs it every minute.

Thresholds come from each channel (`Channel.effective_abandon_after` / `effective_archive_after`,
seconds, 0 disables). Channels without an override share one set of statements against the
setting; each channel with an override gets its own. Every statement moves a bounded batch through
`lifecycle.transition_sessions_batch`, which holds the status rules and records the changes.
Both steps count from `last_activity_at`, which every stored message (ingest and outbound) bumps.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import connection
from django.utils import timezone

from sessions_app.lifecycle.retention import purge_expired_sessions
from sessions_app.lifecycle.transitions import BEGINNING, transition_sessions_batch
from sessions_app.models import Channel, Session, SessionStatus, SweepMark, status_group

log = logging.getLogger(__name__)

ACTOR = "system:sweep"
ENDED = (SessionStatus.ABANDONED, SessionStatus.CLOSED, SessionStatus.RESOLVED, SessionStatus.COMPLETED)


@dataclass
class SweepResult:
    abandoned: int = 0
    archived: int = 0
    purged: int = 0
    statements: int = 0
    moved_from: dict[str, int] = field(default_factory=dict)

    @property
    def total(self) -> int:
        return self.abandoned + self.archived

    def add(self, other: SweepResult) -> None:
        self.abandoned += other.abandoned
        self.archived += other.archived
        self.purged += other.purged
        self.statements += other.statements
        for status, count in other.moved_from.items():
            self.moved_from[status] = self.moved_from.get(status, 0) + count


@dataclass(frozen=True)
class _Step:
    name: str
    to_status: str
    from_statuses: tuple[str, ...]
    threshold: Callable[[Channel], int]
    override: Callable[[Channel], int | None]
    default: int


def _steps() -> list[_Step]:
    """One step per source status: each batch then reads one (status, last_activity_at) index range
    in order, instead of re-scanning rows earlier batches already moved."""
    return [
        _Step(step.name, step.to_status, (source,), step.threshold, step.override, step.default)
        for step in _grouped_steps()
        for source in step.from_statuses
    ]


def _grouped_steps() -> list[_Step]:
    return [
        _Step(
            "abandoned",
            SessionStatus.ABANDONED,
            (SessionStatus.ACTIVE,),
            lambda c: c.effective_abandon_after,
            lambda c: c.abandon_after,
            settings.SESSION_ABANDON_AFTER,
        ),
        _Step(
            "archived",
            SessionStatus.ARCHIVED,
            ENDED,
            lambda c: c.effective_archive_after,
            lambda c: c.archive_after,
            settings.SESSION_ARCHIVE_AFTER,
        ),
    ]


# A batch's row locks last as long as its statement: an inbound message for one of those sessions
# waits that long (then opens a new session). Batches grow (doubling) while a statement takes less
# than this and shrink in proportion when one takes more, within [MIN_BATCH, the batch size].
STATEMENT_BUDGET = 0.15  # seconds
FIRST_BATCH = 1000
MIN_BATCH = 100


def _next_size(size: int, most: int, elapsed: float) -> int:
    fitting = int(size * STATEMENT_BUDGET / elapsed) if elapsed > 0 else most
    return min(most, max(MIN_BATCH, min(2 * size, fitting)))


# Where a drain starts (docs/sweep.md, "Stop 17"). The indexes cannot tell active sessions from
# abandoned ones, so a drain for quiet active sessions that started at the oldest open session would
# read past every abandoned one still waiting to be archived, each minute. It starts REVISIT before
# where the last drain of its scope stopped instead (rows a batch skipped because another
# transaction held them get another look), and from the oldest session of the group every
# FULL_PASS_EVERY, for whatever a mark cannot know of (a row held by some other writer through the
# drains of REVISIT, sessions imported with old activity). A session entering a source status
# behind the mark lowers it (`lifecycle.transition_session`).
REVISIT = timedelta(minutes=10)
FULL_PASS_EVERY = timedelta(hours=1)
# Each statement claims within at most this much last activity, so that a drain from far back (a
# full pass through a week of abandoned sessions) is many short statements, not one long read.
SPAN = timedelta(hours=1)


@dataclass(frozen=True)
class _Scope:
    step: _Step
    seconds: int
    only: list[int] | None
    exclude: list[int]

    @property
    def source(self) -> str:
        return self.step.from_statuses[0]

    @property
    def key(self) -> str:
        if self.only is not None:
            scope = "channels-" + ",".join(map(str, self.only))
        else:
            # A changed set of excluded channels changes which sessions the scope holds: a new mark.
            excluded = ",".join(map(str, sorted(self.exclude)))
            scope = "default-" + hashlib.sha256(excluded.encode()).hexdigest()[:16]
        return f"{self.step.name}:{self.source}:{scope}:{self.seconds}s"


@dataclass
class _Drained:
    result: SweepResult
    position: datetime
    finished: bool


def _drain(
    scope: _Scope, most: int, before: datetime, position: datetime, size: int, once: bool = False
) -> _Drained:
    """Move batches from `position` (keyset over last activity) until the span reaching `before` comes
    back short: everything due is moved (or held by another writer). With `once`, stop at the first
    full batch instead, unfinished, to let the caller share the rest out between connections."""
    result = SweepResult()
    step = scope.step
    while True:
        upper = min(before, position + SPAN)
        started = time.perf_counter()
        moved = transition_sessions_batch(
            from_statuses=step.from_statuses,
            to_status=step.to_status,
            inactive_since=position,
            inactive_before=upper,
            actor=ACTOR,
            reason=f"no activity for {scope.seconds}s",
            channel_ids=scope.only,
            exclude_channel_ids=scope.exclude,
            limit=size,
        )
        result.statements += 1
        for from_status, count in moved.items():
            result.moved_from[from_status] = result.moved_from.get(from_status, 0) + count
        total = sum(moved.values())
        setattr(result, step.name, getattr(result, step.name) + total)
        if total >= size:
            # Full: more may be due in this span, from the newest activity claimed on (ties included).
            position = moved.reached or position
            if once:
                return _Drained(result, position, finished=False)
            size = _next_size(size, most, time.perf_counter() - started)
        elif upper < before and (ahead := _next_activity(scope.source, upper)) is not None and ahead < before:
            position = ahead  # over any stretch of time with no session of the group at once
        else:
            return _Drained(result, position, finished=True)


def _drain_in_thread(*args: Any) -> _Drained:
    try:
        return _drain(*args)
    finally:
        connection.close()  # this thread's own connection


def _next_activity(source: str, since: datetime | None = None) -> datetime | None:
    """The oldest last activity at or after `since` in `source`'s status group (one index probe)."""
    group = status_group(source)
    # The group as a range of one value, as in the batch statement, keeps the planner on
    # `session_group_recent` (lifecycle._BATCH_SQL).
    sessions = Session.objects.filter(status_group__gte=group, status_group__lte=group)
    if since is not None:
        sessions = sessions.filter(last_activity_at__gte=since)
    return (
        sessions.order_by("-status_group", "last_activity_at")
        .values_list("last_activity_at", flat=True)
        .first()
    )


def _sweep_scope(scope: _Scope, limit: int, workers: int, now: datetime) -> SweepResult:
    before = now - timedelta(seconds=scope.seconds)
    # The mark exists before the drain starts, even for a new scope, so that a session reopened
    # behind the drain while it runs lowers it (lifecycle.transition_session) and the advance below,
    # which starts from the value read here, leaves it lowered. A new mark claims no full pass yet.
    mark, _ = SweepMark.objects.get_or_create(
        key=scope.key,
        defaults={"source": scope.source, "swept_before": before, "full_pass_at": BEGINNING},
    )
    full_pass = now - mark.full_pass_at >= FULL_PASS_EVERY
    if full_pass:
        oldest = _next_activity(scope.source)
        start = oldest if oldest is not None else before
    else:
        start = mark.swept_before - REVISIT
    size = min(limit, FIRST_BATCH)
    first = _drain(scope, limit, before, start, size, once=True)
    result = first.result
    if not first.finished:
        if workers == 1:
            parts = [_drain(scope, limit, before, first.position, size)]
        else:
            with ThreadPoolExecutor(max_workers=workers) as pool:
                futures = [
                    pool.submit(_drain_in_thread, scope, limit, before, first.position, size)
                    for _ in range(workers)
                ]
                parts = [future.result() for future in futures]
        for part in parts:
            result.add(part.result)
    # Only from the value this drain started from: a mark lowered meanwhile (a session reopened
    # behind it) stays lowered, and unpassed if this was the scope's first pass, for the next drain
    # to start there.
    SweepMark.objects.filter(key=scope.key, swept_before=mark.swept_before).update(
        swept_before=before, full_pass_at=now if full_pass else mark.full_pass_at
    )
    return result


# Channels already reported by this process: the sweep runs every minute, the warning once.
_warned_conflicts: set[int] = set()


def _warn_about_conflicts(channels: list[Channel]) -> None:
    """Log each channel a settings change left conflicting (check `sessions_app.W001`, checks.py)."""
    for channel in channels:
        if channel.pk not in _warned_conflicts and (conflict := channel.reuse_window_conflict()):
            _warned_conflicts.add(channel.pk)
            log.warning("Channel id %s (%s): %s Fix it in admin (Channels).", channel.pk, channel, conflict)


def sweep_sessions(*, batch_size: int | None = None, parallel: int | None = None) -> SweepResult:
    """Run one full sweep now; safe to run concurrently with another sweep and with ingest.

    `parallel` > 1 (PostgreSQL only) drains each group on that many connections at once; SKIP LOCKED
    hands every row to exactly one of them, exactly as it does for two overlapping sweeps.
    """
    limit = batch_size or settings.SESSION_SWEEP_BATCH_SIZE
    workers = parallel or settings.SESSION_SWEEP_PARALLEL
    if connection.vendor != "postgresql" or connection.in_atomic_block:
        workers = 1  # SQLite has one writer; inside a transaction other connections would not see it
    now = timezone.now()
    result = SweepResult()
    # Few rows: one per Twilio number or chat surface. Those with only a reuse window of their own
    # join no step below; they are loaded for the warning.
    overridden = list(Channel.objects.exclude(abandon_after=None, archive_after=None, reuse_window=None))
    _warn_about_conflicts(overridden)
    keys = []
    for step in _steps():
        own = [c for c in overridden if step.override(c) is not None]
        scopes = [_Scope(step, step.default, None, [c.pk for c in own])]
        scopes += [_Scope(step, step.threshold(c), [c.pk], []) for c in own]
        for scope in scopes:
            if not scope.seconds:  # 0 disables the step
                continue
            keys.append(scope.key)
            result.add(_sweep_scope(scope, limit, workers, now))
    # Marks of scopes that no longer exist (a threshold or an override changed): a new scope starts
    # with a full pass, and an old one coming back must too.
    SweepMark.objects.exclude(key__in=keys).delete()
    # Retention last: a session archived just now is far younger than any purge threshold.
    result.purged = purge_expired_sessions(now)
    if result.total or result.purged:
        log.info(
            "Sweep: %s abandoned, %s archived, %s purged", result.abandoned, result.archived, result.purged
        )
    return result
