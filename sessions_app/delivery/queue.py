"""Queueing Celery tasks: the one way work is handed to a worker.

Services queue by the task's name (`sessions_app/tasks.py` defines the tasks, each of which loads
rows by id and calls a service): the tasks import the services, never the other way round, so the
dependency points one way. `after_commit` is what the code that made a change calls: the task is
queued once the transaction commits, so a worker never looks for a row a rollback took back; outside
a transaction, at once.

If the broker cannot take a task, the failure is logged and the work stays owed in the database
(`reply_state`, `delivery_status`): `recover_owed_work` queues it again once the broker is back. So
no request fails, and nothing is lost, for a broker outage.
"""

from __future__ import annotations

import logging
import random
from typing import Any

from celery import current_app
from django.conf import settings
from django.db import transaction

log = logging.getLogger(__name__)

# The tasks' names, unchanged since they were first queued (a worker of an older release may still
# hold some): sessions_app/tasks.py registers each under its constant here.
PRODUCE_REPLY = "sessions_app.tasks.produce_reply_task"
PRODUCE_REPLIES = "sessions_app.tasks.produce_replies_task"
DRAIN_REPLIES = "sessions_app.tasks.drain_replies_task"
DELIVER_MESSAGE = "sessions_app.tasks.deliver_message_task"
SWEEP_SESSIONS = "sessions_app.tasks.sweep_sessions_task"
RECOVER_OWED_WORK = "sessions_app.tasks.recover_owed_work"
WARM_STAFF_CHART = "sessions_app.tasks.warm_staff_chart"
ROLL_UP_WINDOWS = "sessions_app.tasks.roll_up_windows"
REFRESH_REPORT_ROLLUPS = "sessions_app.tasks.refresh_report_rollups"
REFRESH_REPORT_TODAY = "sessions_app.tasks.refresh_report_today"
# Event webhooks (sessions_app/events/).
DELIVER_EVENTS = "sessions_app.tasks.deliver_events"
RECOVER_EVENT_DELIVERIES = "sessions_app.tasks.recover_event_deliveries"
PURGE_EVENT_LOG = "sessions_app.tasks.purge_event_log"


def backoff(attempt: int) -> float:
    """Seconds to wait before attempt `attempt + 1`: doubling, capped, half of it random (jitter)."""
    ceiling = min(
        float(settings.TASK_RETRY_BACKOFF_MAX), settings.TASK_RETRY_BACKOFF * 2.0 ** max(attempt - 1, 0)
    )
    return ceiling / 2 + random.uniform(0, ceiling / 2)


def enqueue(task_name: str, *args: Any, countdown: float | None = None) -> bool:
    """Queue the task `task_name` with `args` now; False (logged) if the broker is unreachable."""
    try:
        # The registered task (so CELERY_TASK_ALWAYS_EAGER runs it inline, as for a direct call).
        # Our own repr of the arguments (ids, small): Celery's default `saferepr` for monitoring was
        # about a tenth of a publish's CPU. `declare=[]`: no queue declaration per message. Both our
        # brokers (Redis, the filesystem) take a message for a queue no one declared (a Redis list, a
        # file) and every worker declares the queues it reads at start; kombu's check that it had
        # declared the queue already was 3 % of an inbound SMS's instructions (docs/tasks.md).
        current_app.tasks[task_name].apply_async(
            args, countdown=countdown, argsrepr=repr(args), kwargsrepr="{}", declare=[]
        )
    except Exception as exc:  # kombu/redis raise a variety of connection errors
        log.warning(
            "Could not queue %s%r (%s: %s); the recovery task will queue it once the broker is back",
            task_name,
            args,
            type(exc).__name__,
            exc,
        )
        return False
    return True


def after_commit(task_name: str, *args: Any, countdown: float | None = None) -> None:
    """Queue the task once the current transaction commits (at once when none is open)."""
    transaction.on_commit(lambda: enqueue(task_name, *args, countdown=countdown), robust=True)
