"""The lifecycle sweep: abandon quiet active sessions, archive old ended ones. Beat runs it every minute.

Thresholds come from each channel (`Channel.effective_abandon_after` / `effective_archive_after`,
seconds, 0 disables). Channels without an override share one set of statements against the
setting; each channel with an override gets its own. Every statement moves a bounded batch through
`lifecycle.transition_sessions_batch`, which holds the status rules and records the changes.
Abandoning counts from `last_activity_at`, which every stored message (ingest and outbound), an
activity ping and a metadata save bump; archiving counts from `status_changed_at`, when the session
ended, for every surface. Each seed surface has a channel of its own (`Channel.surface`), whose
thresholds (seeded by migration 0016, editable in admin) are that surface's lifecycle.
"""

from __future__ import annotations

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
from sessions_app.models import Channel, SessionStatus

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
    counted_from: str = "last_activity_at"


def _steps() -> list[_Step]:
    """One step per source status: each batch then reads one (status, last_activity_at) index range
    in order, instead of re-scanning rows earlier batches already moved."""
    return [
        _Step(
            step.name,
            step.to_status,
            (source,),
            step.threshold,
            step.override,
            step.default,
            step.counted_from,
        )
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
            "status_changed_at",
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


@dataclass(frozen=True)
class _Scope:
    step: _Step
    seconds: int
    only: list[int] | None
    exclude: list[int]


@dataclass
class _Drained:
    result: SweepResult
    position: datetime
    finished: bool


def _drain(
    scope: _Scope, most: int, before: datetime, position: datetime, size: int, once: bool = False
) -> _Drained:
    """Move batches from `position` (keyset over last activity) until one comes back short: everything
    due is moved (or held by another writer, and due again at the next sweep). With `once`, stop at
    the first full batch instead, unfinished, to let the caller share the rest out between connections."""
    result = SweepResult()
    step = scope.step
    while True:
        started = time.perf_counter()
        moved = transition_sessions_batch(
            from_statuses=step.from_statuses,
            to_status=step.to_status,
            inactive_since=position,
            inactive_before=before,
            actor=ACTOR,
            reason=(
                f"no activity for {scope.seconds}s"
                if step.counted_from == "last_activity_at"
                else f"ended {scope.seconds}s ago"
            ),
            channel_ids=scope.only,
            exclude_channel_ids=scope.exclude,
            limit=size,
            counted_from=step.counted_from,
        )
        result.statements += 1
        for from_status, count in moved.items():
            result.moved_from[from_status] = result.moved_from.get(from_status, 0) + count
        total = sum(moved.values())
        setattr(result, step.name, getattr(result, step.name) + total)
        if total < size:
            return _Drained(result, position, finished=True)
        # Full: more may be due, from the newest activity claimed on (ties included).
        position = moved.reached or position
        if once:
            return _Drained(result, position, finished=False)
        size = _next_size(size, most, time.perf_counter() - started)


def _drain_in_thread(*args: Any) -> _Drained:
    try:
        return _drain(*args)
    finally:
        connection.close()  # this thread's own connection


def _sweep_scope(scope: _Scope, limit: int, workers: int, now: datetime) -> SweepResult:
    before = now - timedelta(seconds=scope.seconds)
    size = min(limit, FIRST_BATCH)
    first = _drain(scope, limit, before, BEGINNING, size, once=True)
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

    `parallel` > 1 drains each step on that many connections at once; SKIP LOCKED hands every row to
    exactly one of them, exactly as it does for two overlapping sweeps.
    """
    limit = batch_size or settings.SESSION_SWEEP_BATCH_SIZE
    workers = parallel or settings.SESSION_SWEEP_PARALLEL
    if connection.in_atomic_block:
        workers = 1  # other connections would not see what this transaction holds
    now = timezone.now()
    result = SweepResult()
    # Few rows: one per Twilio number or chat surface. Those with only a reuse window of their own
    # join no step below; they are loaded for the warning.
    overridden = list(Channel.objects.exclude(abandon_after=None, archive_after=None, reuse_window=None))
    _warn_about_conflicts(overridden)
    for step in _steps():
        own = [c for c in overridden if step.override(c) is not None]
        scopes = [_Scope(step, step.default, None, [c.pk for c in own])]
        scopes += [_Scope(step, step.threshold(c), [c.pk], []) for c in own]
        for scope in scopes:
            if not scope.seconds:  # 0 disables the step
                continue
            result.add(_sweep_scope(scope, limit, workers, now))
    # Retention last: a session archived just now is far younger than any purge threshold.
    result.purged = purge_expired_sessions(now)
    if result.total or result.purged:
        log.info(
            "Sweep: %s abandoned, %s archived, %s purged", result.abandoned, result.archived, result.purged
        )
    return result
