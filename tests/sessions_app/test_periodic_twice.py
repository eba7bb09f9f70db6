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
- the staff chart's warm-up: a cache fill, the same value whoever computes it (here).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from django.conf import settings
from django.db import connections
from django.utils import timezone

from sessions_app.delivery import queue
from sessions_app.models import DeliveryStatus, Message, ReplyState, Role
from sessions_app.tasks import recover_owed_work, warm_staff_chart
from tests.factories import ChannelFactory, MessageFactory, SessionFactory
from tests.twilio_api import ACCOUNT, running_twilio

pytestmark = pytest.mark.django_db(transaction=True)

# Each periodic task and the test that shows two runs of it at once do the work once.
COVERED = {
    queue.SWEEP_SESSIONS: "test_sweep.py::test_two_overlapping_sweeps_move_each_session_once",
    queue.RECOVER_OWED_WORK: "test_two_recoveries_at_once_answer_and_send_each_message_once",
    queue.WARM_STAFF_CHART: "test_two_chart_warm_ups_at_once_agree",
}


def twice_at_once(task: Callable[[], Any]) -> list[Any]:
    barrier = threading.Barrier(2)
    results: list[Any] = []

    def run() -> None:
        try:
            barrier.wait()
            results.append(task())
        finally:
            connections.close_all()

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
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
