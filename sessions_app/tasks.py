"""Celery tasks: each loads by id and calls a service; the rules live in the services.

Services queue these by name (`delivery/queue.py`), so this module imports the services and no
service imports it. Retries wait with exponential backoff and jitter; how many attempts a reply or a
delivery gets is counted in the database (`reply_attempts`, `delivery_attempts`), so redeliveries
and the recovery task share one budget.
"""

from __future__ import annotations

import logging

from celery import Task, shared_task

from sessions_app.delivery import outbound, queue, replies, reply_drain
from sessions_app.delivery.queue import backoff
from sessions_app.events import dispatch as event_dispatch
from sessions_app.ingest.window_report import roll_up_channels
from sessions_app.lifecycle.sweep import sweep_sessions
from sessions_app.reports.rollup import refresh_rollups, refresh_today
from sessions_app.ui.queries import daily_counts

log = logging.getLogger(__name__)


@shared_task(bind=True, name=queue.PRODUCE_REPLY, max_retries=None)
def produce_reply_task(self: Task, message_id: int) -> None:
    try:
        replies.produce_reply(message_id)
    except replies.ReplyDeferred as exc:
        raise self.retry(countdown=backoff(exc.attempt), exc=exc) from None


@shared_task(name=queue.DRAIN_REPLIES)
def drain_replies_task(slot: int) -> int:
    """Answer owed replies, oldest first, while there are any (delivery/reply_drain.py)."""
    return reply_drain.drain_replies(slot)


@shared_task(name=queue.PRODUCE_REPLIES)
def produce_replies_task(message_ids: list[int]) -> None:
    """Replies owed to several messages in one task (queued so by earlier releases).

    Each is answered on its own: one that must wait for a retry gets its own `produce_reply_task`
    with backoff, and one that fails unexpectedly does not hold up the others (its claim's lease
    runs out and recovery queues it again).
    """
    for message_id in message_ids:
        try:
            replies.produce_reply(message_id)
        except replies.ReplyDeferred as exc:
            queue.enqueue(queue.PRODUCE_REPLY, message_id, countdown=backoff(exc.attempt))
        except Exception:
            log.exception("Reply to message %s failed; recovery will queue it again", message_id)


@shared_task(bind=True, name=queue.DELIVER_MESSAGE, max_retries=None)
def deliver_message_task(self: Task, message_id: int) -> None:
    try:
        outbound.deliver_message(message_id)
    except outbound.DeliveryDeferred as exc:
        raise self.retry(countdown=backoff(exc.attempt), exc=exc) from None


@shared_task(name=queue.SWEEP_SESSIONS)
def sweep_sessions_task() -> dict[str, int]:
    result = sweep_sessions()
    return {"abandoned": result.abandoned, "archived": result.archived}


@shared_task(name=queue.RECOVER_OWED_WORK)
def recover_owed_work() -> dict[str, int]:
    """Queue again what never reached a worker: owed replies and pending deliveries."""
    reply_ids = replies.recover_owed_replies()
    for message_id in reply_ids:
        queue.enqueue(queue.PRODUCE_REPLY, message_id)
    adopted, lost = outbound.reconcile_lost_deliveries()
    delivery_ids = outbound.recover_pending_deliveries()
    for message_id in delivery_ids:
        queue.enqueue(queue.DELIVER_MESSAGE, message_id)
    if reply_ids or delivery_ids or adopted or lost:
        log.info(
            "Recovery: %s reply(ies) and %s delivery(ies) queued again; of the deliveries whose worker "
            "stopped mid-send, %s found at Twilio and %s to send again",
            len(reply_ids),
            len(delivery_ids),
            adopted,
            lost,
        )
    return {
        "replies": len(reply_ids),
        "deliveries": len(delivery_ids),
        "lost_deliveries_found": adopted,
        "lost_deliveries_resent": lost,
    }


@shared_task(name=queue.WARM_STAFF_CHART)
def warm_staff_chart() -> int:
    """Count the staff chart's past days before a page needs them (once a day it is a few hundred
    milliseconds at a million sessions); with a shared cache (Redis) no page request pays it."""
    return len(daily_counts())


@shared_task(name=queue.ROLL_UP_WINDOWS)
def roll_up_windows() -> int:
    """Sum up the finished days of every channel for the window report (ingest/window_report.py)."""
    return roll_up_channels()


@shared_task(name=queue.REFRESH_REPORT_ROLLUPS)
def refresh_report_rollups() -> dict[str, int]:
    """Roll up the past days reports read, and recompute those later changes touched (reports/rollup.py)."""
    result = refresh_rollups()
    return {"marked": result.marked, "computed": result.computed, "pending": result.pending}


@shared_task(name=queue.REFRESH_REPORT_TODAY)
def refresh_report_today() -> bool:
    """Recompute today's provisional report rollup, which the summary reads while it is recent."""
    return refresh_today()


# --- Event webhooks (sessions_app/events/) ------------------------------------------------------------


@shared_task(name=queue.DELIVER_EVENTS)
def deliver_events(endpoint_id: int) -> int:
    """Send one endpoint's due events in batches; failures are retried by the schedule, not here."""
    return event_dispatch.deliver_due(endpoint_id)


@shared_task(name=queue.RECOVER_EVENT_DELIVERIES)
def recover_event_deliveries() -> dict[str, int]:
    return event_dispatch.recover()


@shared_task(name=queue.PURGE_EVENT_LOG)
def purge_event_log() -> dict[str, int]:
    return event_dispatch.purge()
