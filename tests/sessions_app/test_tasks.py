import threading
from datetime import timedelta

import pytest
import time_machine
from django.db import connections, transaction
from django.db.models import F
from django.utils import timezone

from config.celery_app import app as celery_app
from sessions_app.lifecycle.sweep import sweep_sessions
from sessions_app.models import Message, ReplyState, Role, Session, SessionStatus
from sessions_app.tasks import backoff, recover_owed_work, sweep_sessions_task
from tests.factories import SessionFactory
from tests.twilio_helpers import send_sms

pytestmark = pytest.mark.django_db
START = "2025-01-15 10:00:00+00:00"


def test_beat_runs_the_sweep_every_minute_and_recovery_periodically():
    schedule = celery_app.conf.beat_schedule
    assert schedule["sweep-sessions"] == {"task": "sessions_app.tasks.sweep_sessions_task", "schedule": 60.0}
    assert schedule["recover-owed-work"]["task"] == "sessions_app.tasks.recover_owed_work"
    assert {entry["task"] for entry in schedule.values()} <= set(celery_app.tasks)


def test_the_beat_task_runs_the_same_sweep():
    with time_machine.travel(START, tick=False) as clock:
        session = SessionFactory()
        clock.shift(timedelta(hours=1))
        assert sweep_sessions_task.delay().get() == {"abandoned": 1, "archived": 0}
    session.refresh_from_db()
    assert session.status == SessionStatus.ABANDONED


def test_recovery_answers_a_message_whose_task_never_reached_a_worker(client):
    with time_machine.travel(START, tick=False) as clock:
        send_sms(client, "+15551112222", "Hello")  # on-commit callbacks not run: never queued
        assert Message.objects.get().reply_state == ReplyState.OWED
        clock.shift(timedelta(minutes=2))
        assert recover_owed_work.delay().get()["replies"] == 1
    assert Message.objects.get(role=Role.CONTACT).reply_state == ReplyState.DONE
    assert Message.objects.filter(role=Role.AGENT).count() == 1


@pytest.mark.parametrize("attempt", [1, 2, 3, 10])
def test_backoff_doubles_up_to_the_cap_with_jitter(settings, attempt):
    settings.TASK_RETRY_BACKOFF = 2
    settings.TASK_RETRY_BACKOFF_MAX = 60
    ceiling = min(60, 2 * 2 ** (attempt - 1))
    delays = {backoff(attempt) for _ in range(50)}
    assert all(ceiling / 2 <= d <= ceiling for d in delays)
    assert len(delays) > 1  # jittered, so retries of many messages do not arrive in step


@pytest.mark.django_db(transaction=True)
def test_the_sweep_skips_a_session_that_ingest_is_writing_to_right_now():
    with time_machine.travel(START, tick=False) as clock:
        busy, idle = SessionFactory(), SessionFactory()
        clock.shift(timedelta(hours=1))
        locked, release = threading.Event(), threading.Event()

        def ingest_bump() -> None:
            # What ingest.record_inbound_message does to a reused session, held open mid-transaction.
            try:
                with transaction.atomic():
                    Session.objects.filter(pk=busy.pk, status=SessionStatus.ACTIVE).update(
                        message_count=F("message_count") + 1, last_activity_at=timezone.now()
                    )
                    locked.set()
                    release.wait(10)
            finally:
                connections.close_all()

        thread = threading.Thread(target=ingest_bump)
        thread.start()
        assert locked.wait(10)
        result = sweep_sessions()  # does not wait for the busy row
        release.set()
        thread.join()
    assert result.abandoned == 1
    busy.refresh_from_db()
    idle.refresh_from_db()
    assert (busy.status, busy.message_count) == (SessionStatus.ACTIVE, 1)
    assert idle.status == SessionStatus.ABANDONED
