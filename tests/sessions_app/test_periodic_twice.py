"""Every periodic task is safe to run twice at once (two beats by mistake, a slow run and the next).

Since schedulers may run in any number (tests/sessions_app/test_schedulers.py), only one of them
sends; but a leader that stalls past its lock, or a task redelivered after a worker died, still runs
a periodic task twice, overlapping. Each one's claims are atomic:

- the lifecycle sweep: `FOR UPDATE SKIP LOCKED` hands each session to one run
  (tests/sessions_app/test_sweep.py: `test_two_overlapping_sweeps_move_each_session_once`,
  `test_one_sweep_on_several_connections_moves_each_session_once`);
- the recovery of owed work: the reply's `owed → claimed` and the send's `pending → sending` are
  conditional UPDATEs (here, two recoveries at once; one task twice in a row:
  tests/sessions_app/test_replies.py `test_a_reply_is_produced_once_however_often_it_is_asked_for`,
  tests/sessions_app/test_delivery.py `test_a_delivery_task_run_twice_sends_once`, and a real worker
  given one task twice: tests/sessions_app/test_worker.py);
- the staff chart's warm-up: a cache fill, the same value whoever computes it (here);
- the reports' daily rollup: marking takes the watermark's row lock, and each stale day is claimed
  with `FOR UPDATE SKIP LOCKED` (here: two runs at once compute each day once; a day another worker
  holds is skipped: tests/reports/test_rollup.py
  `test_a_day_another_worker_is_computing_is_skipped_not_waited_for`);
- the reports' rollup of today: the run claims today's row with `FOR UPDATE SKIP LOCKED`, and one
  that finds it computed less than half an interval ago leaves it (here: two runs at once compute
  it once; one that finds it held skips: tests/reports/test_rollup.py
  `test_a_today_run_skips_while_another_worker_computes_today`);
- the window report's rollup: each channel's roll locks its `WindowRollupState` row, and the second
  roll finds the days rolled (here);
- the event recovery: lost claims go back by a conditional UPDATE (`sending → pending`), and the
  endpoints' delivery tasks it queues claim under the endpoint's advisory lock with
  `FOR UPDATE SKIP LOCKED`, so two recoveries may queue an endpoint's task twice but each delivery
  is sent once (here);
- the event log's purge: each batch is claimed with `FOR UPDATE SKIP LOCKED` and counted by what its
  DELETE removed (here).
"""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
import time_machine
from django.conf import settings
from django.core.cache import cache
from django.db import connections
from django.db.models import QuerySet
from django.utils import timezone

from sessions_app.delivery import queue
from sessions_app.events import dispatch
from sessions_app.events.models import Delivery, DeliveryAttempt, DeliveryState, Event, EventEndpoint
from sessions_app.ingest.window_report import roll_up_channels
from sessions_app.models import (
    DailyRollup,
    DeliveryStatus,
    Direction,
    Message,
    ReplyState,
    Role,
    RollupDay,
    WindowRollupDay,
    WindowRollupGaps,
    WindowRollupState,
)
from sessions_app.reports import rollup
from sessions_app.tasks import (
    purge_event_log,
    recover_event_deliveries,
    recover_owed_work,
    refresh_report_rollups,
    refresh_report_today,
    roll_up_windows,
    warm_staff_chart,
)
from tests.event_receiver import Receiver
from tests.factories import (
    ChannelFactory,
    ContactFactory,
    EventEndpointFactory,
    MessageFactory,
    SessionFactory,
)
from tests.reports.builders import add_message, make_session
from tests.twilio_api import ACCOUNT, running_twilio

pytestmark = pytest.mark.django_db(transaction=True)

# Each periodic task and the test that shows two runs of it at once do the work once.
COVERED = {
    queue.SWEEP_SESSIONS: "test_sweep.py::test_two_overlapping_sweeps_move_each_session_once",
    queue.RECOVER_OWED_WORK: "test_two_recoveries_at_once_answer_and_send_each_message_once",
    queue.WARM_STAFF_CHART: "test_two_chart_warm_ups_at_once_agree",
    queue.REFRESH_REPORT_ROLLUPS: "test_two_report_rollups_at_once_compute_each_day_once",
    queue.REFRESH_REPORT_TODAY: "test_two_rollups_of_today_at_once_compute_it_once",
    queue.ROLL_UP_WINDOWS: "test_two_window_rollups_at_once_roll_each_day_once",
    queue.RECOVER_EVENT_DELIVERIES: "test_two_event_recoveries_at_once_release_and_send_each_delivery_once",
    queue.PURGE_EVENT_LOG: "test_two_event_purges_at_once_delete_each_row_once_and_their_counts_add_up",
}


def twice_at_once(task: Callable[[], Any]) -> list[Any]:
    barrier = threading.Barrier(2)
    results: list[Any] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            barrier.wait()
            results.append(task())
        except BaseException as exc:  # a run that failed is no run that did the work once
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
    return results


def test_every_periodic_task_has_a_run_twice_test():
    scheduled = {entry["task"] for entry in settings.CELERY_BEAT_SCHEDULE.values()}
    assert scheduled == set(COVERED), "a new periodic task needs a test that it is safe to run twice"


def test_two_recoveries_at_once_answer_and_send_each_message_once(settings):
    with running_twilio() as twilio:
        settings.TWILIO_ACCOUNT_SID = ACCOUNT
        settings.TWILIO_API_BASE_URL = twilio.url
        settings.TASK_RECOVERY_GRACE = 60
        long_ago = timezone.now() - timedelta(minutes=5)
        owed = [
            MessageFactory(
                session=SessionFactory(channel=ChannelFactory(address=f"+1500555000{n}")),
                reply_state=ReplyState.OWED,
                created_at=long_ago,
            )
            for n in range(5)
        ]
        # The tasks run inline where recovery queues them (CELERY_TASK_ALWAYS_EAGER): each reply is
        # produced and then sent from inside one of the two recoveries.
        results = twice_at_once(recover_owed_work)
        assert sum(result["replies"] for result in results) >= len(owed)
        replies = Message.objects.filter(role=Role.AGENT)
        assert sorted(replies.values_list("in_reply_to_id", flat=True)) == sorted(m.pk for m in owed)
        assert set(replies.values_list("delivery_status", flat=True)) == {DeliveryStatus.QUEUED}
        assert sorted(record["from"] for record in twilio.created) == sorted(
            m.session.channel.address for m in owed
        )
        assert not Message.objects.filter(role=Role.CONTACT).exclude(reply_state=ReplyState.DONE).exists()


def test_two_chart_warm_ups_at_once_agree():
    SessionFactory.create_batch(3)
    first, second = twice_at_once(warm_staff_chart)
    assert first == second == warm_staff_chart()


def totals() -> QuerySet[DailyRollup]:
    """Each day's row over every channel kind and business."""
    return DailyRollup.objects.filter(channel_kind=None, business_id=None)


def rollup_rows() -> list[tuple[Any, ...]]:
    fields = [f.name for f in DailyRollup._meta.concrete_fields if f.name != "id"]
    return sorted(DailyRollup.objects.values_list(*fields), key=repr)  # None (every) beside strings


def test_two_report_rollups_at_once_compute_each_day_once():
    now = datetime(2026, 11, 13, 12, tzinfo=UTC)
    for day in (8, 10, 12):
        session = make_session(datetime(2026, 11, day, 9, tzinfo=UTC), "sms")
        add_message(session, session.created_at, Direction.INBOUND, Role.CONTACT)
        add_message(session, session.created_at + timedelta(seconds=30), Direction.OUTBOUND, Role.AGENT)
    with time_machine.travel(now, tick=False):
        # The very first runs: both also race to create the watermark.
        results = twice_at_once(refresh_report_rollups)
        assert sum(result["computed"] for result in results) == 5  # the 8th to the 12th, each once
        assert sum(result["marked"] for result in results) == 5
        assert not RollupDay.objects.filter(stale=True).exists()  # ("pending": the other's day in hand)
        twice = rollup_rows()
        RollupDay.objects.update(stale=True)
        DailyRollup.objects.all().delete()
        assert rollup.refresh_rollups().computed == 5
    assert twice == rollup_rows()  # what one run alone stores
    assert list(totals().values_list("day", "sessions_opened")) == [
        (date(2026, 11, day), 1) for day in (8, 10, 12)
    ]


def test_two_rollups_of_today_at_once_compute_it_once():
    now = datetime(2026, 11, 13, 12, tzinfo=UTC)
    for hour in (8, 9):
        session = make_session(datetime(2026, 11, 13, hour, tzinfo=UTC), "sms")
        add_message(session, session.created_at, Direction.INBOUND, Role.CONTACT)
        add_message(session, session.created_at + timedelta(seconds=30), Direction.OUTBOUND, Role.AGENT)
    with time_machine.travel(now, tick=False):
        # The very first runs: both also race to create today's row.
        assert sorted(twice_at_once(refresh_report_today)) == [False, True]
        twice = rollup_rows()
        assert rollup.refresh_today(min_gap=timedelta(0))
    assert twice == rollup_rows()  # what one run alone stores
    assert list(totals().values_list("day", "sessions_opened")) == [(date(2026, 11, 13), 2)]
    assert RollupDay.objects.get(day=date(2026, 11, 13)).provisional


def window_rows() -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    days = WindowRollupDay.objects.values_list("channel_id", "contact_id", "day", "first_at", "last_at")
    gaps = WindowRollupGaps.objects.values_list("channel_id", "day", "gap_seconds", "count")
    return sorted(days), sorted(gaps)


@pytest.mark.parametrize("rebuild", [False, True], ids=["first-roll", "rebuild-after-a-deletion"])
def test_two_window_rollups_at_once_roll_each_day_once(rebuild):
    start = datetime(2026, 1, 1, 8, tzinfo=UTC)
    now = start + timedelta(days=4)
    with time_machine.travel(now, tick=False):  # last activity after the messages, as ingest keeps it
        for address in ("+15005550001", "+15005550002"):
            channel = ChannelFactory(address=address)
            for n in range(3):
                session = SessionFactory(channel=channel, contact=ContactFactory())
                for minutes in (0, 1, 7, 60 * 24, 60 * 24 + 2, 60 * 48 + n):
                    MessageFactory(session=session, created_at=start + timedelta(minutes=minutes))
    if rebuild:  # rolled two days ago, then a deletion made the rollup dirty: both runs would rebuild
        roll_up_channels(now=now - timedelta(days=2))
        WindowRollupState.objects.update(dirty_before=start)
    with time_machine.travel(now, tick=False):
        # First rolls: both runs also race to create each channel's state.
        results = twice_at_once(roll_up_windows)
        twice = window_rows()
        WindowRollupState.objects.all().delete()
        WindowRollupDay.objects.all().delete()
        WindowRollupGaps.objects.all().delete()
        once = roll_up_channels()
    assert once == 2 * 3 * 3  # (contact, day) rows: two channels, three contacts, three days
    assert sum(results) == once  # what one run rolled, the other found rolled
    assert twice == window_rows()
    assert set(WindowRollupState.objects.values_list("rolled_until", flat=True)) == {date(2026, 1, 5)}


def event_for(endpoint_id: int, sequence: int, session_id: uuid.UUID, **delivery: Any) -> Delivery:
    event = Event.objects.create(
        session_id=session_id,
        sequence=sequence,
        type="message.created",
        webhook_id=f"msg_{uuid.uuid4().hex}",
        body=json.dumps({"type": "message.created", "timestamp": "2026-01-01T00:00:00Z", "data": {}}),
    )
    return Delivery.objects.create(
        event=event, endpoint_id=endpoint_id, session_id=session_id, sequence=sequence, **delivery
    )


@pytest.fixture
def events_receiver(settings):
    settings.EVENT_WEBHOOKS_ALLOW_PRIVATE = True
    cache.clear()  # the delivery tasks' flags live in Redis, which outlives each test
    dispatch.close_pool()
    receiver = Receiver()
    receiver.start()
    yield receiver
    receiver.stop()
    dispatch.close_pool()
    cache.clear()


def test_two_event_recoveries_at_once_release_and_send_each_delivery_once(events_receiver):
    lost_at = timezone.now() - dispatch.LEASE - timedelta(minutes=1)
    deliveries: list[Delivery] = []
    for _ in range(2):
        endpoint = EventEndpointFactory(url=events_receiver.url, event_types=["*"])
        events_receiver.secrets.append(endpoint.secret)
        for _ in range(3):
            session = SessionFactory()
            # A claim whose worker vanished, then a due retry and a new event of the same session.
            lost = {"state": DeliveryState.SENDING, "claimed_at": lost_at, "attempts": 1}
            deliveries.append(event_for(endpoint.pk, 1, session.pk, **lost))
            deliveries.append(event_for(endpoint.pk, 2, session.pk, attempts=2))
            deliveries.append(event_for(endpoint.pk, 3, session.pk))
    # The delivery tasks run inline where recovery queues them (CELERY_TASK_ALWAYS_EAGER).
    results = twice_at_once(recover_event_deliveries)
    assert sum(result["released"] for result in results) == 6  # each lost claim released once
    received = sorted(r.webhook_id for r in events_receiver.delivered())
    assert received == sorted(d.event.webhook_id for d in deliveries)  # each sent once
    assert all(r.verified for r in events_receiver.received)
    assert set(Delivery.objects.values_list("state", flat=True)) == {DeliveryState.DELIVERED}
    assert DeliveryAttempt.objects.count() == len(deliveries)


def test_two_event_purges_at_once_delete_each_row_once_and_their_counts_add_up(settings):
    endpoint = EventEndpointFactory(url="https://hooks.example.com/in", event_types=["*"])
    old = timezone.now() - timedelta(seconds=settings.EVENT_LOG_RETENTION + 60)
    for sequence in range(1, 41):  # old and finished: purged, with their attempts
        delivery = event_for(endpoint.pk, sequence, SessionFactory().pk, state=DeliveryState.DELIVERED)
        Event.objects.filter(pk=delivery.event_id).update(created_at=old)
        DeliveryAttempt.objects.create(delivery=delivery, attempted_at=old, status_code=200)
    owed = []
    for sequence in range(1, 31):  # old but still owed: kept, their old attempts purged
        delivery = event_for(endpoint.pk, sequence, SessionFactory().pk, attempts=1)
        Event.objects.filter(pk=delivery.event_id).update(created_at=old)
        DeliveryAttempt.objects.create(delivery=delivery, attempted_at=old, status_code=500)
        DeliveryAttempt.objects.create(delivery=delivery, status_code=500)  # recent: kept
        owed.append(delivery.pk)
    gone = EventEndpointFactory(url="https://hooks.example.com/gone", event_types=["*"]).pk
    EventEndpoint.objects.filter(pk=gone).delete()
    for sequence in range(1, 26):  # of an endpoint deleted since (no database constraint): purged
        event_for(gone, sequence, SessionFactory().pk)

    results = twice_at_once(lambda: dispatch.purge(batch=3))  # small batches: the runs interleave
    assert {key: sum(r[key] for r in results) for key in results[0]} == {
        "attempts": 70,
        "events": 40,
        "orphan_deliveries": 25,
    }
    assert sorted(Delivery.objects.values_list("pk", flat=True)) == sorted(owed)
    assert DeliveryAttempt.objects.count() == 30
    assert Event.objects.count() == 30 + 25  # the owed ones', and the gone endpoint's (recent)
    assert purge_event_log() == {"attempts": 0, "events": 0, "orphan_deliveries": 0}
