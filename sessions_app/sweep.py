"""The lifecycle sweep: abandon quiet active sessions, archive old ended ones. Beat runs it every minute.

Thresholds come from each channel (`Channel.effective_abandon_after` / `effective_archive_after`,
seconds, 0 disables). Channels without an override share one set of statements against the
setting; each channel with an override gets its own. Every statement moves a bounded batch through
`lifecycle.transition_sessions_batch`, which holds the status rules and records the changes.
Both steps count from `last_activity_at`, which every stored message (ingest and outbound) bumps.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta

from django.conf import settings
from django.utils import timezone

from sessions_app.lifecycle import transition_sessions_batch
from sessions_app.models import Channel, SessionStatus

log = logging.getLogger(__name__)

ACTOR = "system:sweep"
ENDED = (SessionStatus.ABANDONED, SessionStatus.CLOSED, SessionStatus.RESOLVED, SessionStatus.COMPLETED)


@dataclass
class SweepResult:
    abandoned: int = 0
    archived: int = 0
    statements: int = 0
    moved_from: dict[str, int] = field(default_factory=dict)

    @property
    def total(self) -> int:
        return self.abandoned + self.archived


@dataclass(frozen=True)
class _Step:
    name: str
    to_status: str
    from_statuses: tuple[str, ...]
    threshold: Callable[[Channel], int]
    override: Callable[[Channel], int | None]
    default: int


def _steps() -> list[_Step]:
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


def sweep_sessions(*, batch_size: int | None = None) -> SweepResult:
    """Run one full sweep now; safe to run concurrently with another sweep and with ingest."""
    limit = batch_size or settings.SESSION_SWEEP_BATCH_SIZE
    now = timezone.now()
    result = SweepResult()
    # Few rows: one per Twilio number or chat surface.
    overridden = list(Channel.objects.exclude(abandon_after=None, archive_after=None))
    for step in _steps():
        own = [c for c in overridden if step.override(c) is not None]
        groups: list[tuple[int, list[int] | None, list[int]]] = [(step.default, None, [c.pk for c in own])]
        groups += [(step.threshold(c), [c.pk], []) for c in own]
        for seconds, only, exclude in groups:
            if not seconds:  # 0 disables the step
                continue
            before = now - timedelta(seconds=seconds)
            while True:
                moved = transition_sessions_batch(
                    from_statuses=step.from_statuses,
                    to_status=step.to_status,
                    inactive_before=before,
                    actor=ACTOR,
                    reason=f"no activity for {seconds}s",
                    channel_ids=only,
                    exclude_channel_ids=exclude,
                    limit=limit,
                )
                result.statements += 1
                for _, from_status in moved:
                    result.moved_from[from_status] = result.moved_from.get(from_status, 0) + 1
                setattr(result, step.name, getattr(result, step.name) + len(moved))
                if len(moved) < limit:
                    break
    if result.total:
        log.info("Sweep: %s abandoned, %s archived", result.abandoned, result.archived)
    return result
