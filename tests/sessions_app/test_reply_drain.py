"""The reply drain (sessions_app/delivery/reply_drain.py): owed replies claimed from the database by
drains that a commit starts only when no drain has promised to look again.

Which tasks ran is read from Celery's own `task_prerun` signal (the tasks run inline here,
CELERY_TASK_ALWAYS_EAGER). Promises live in the shared cache: the tests that read them need Redis.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator

import pytest
import time_machine
from celery.signals import task_prerun
from django.core.cache import cache
from django.db import connection

from sessions_app.delivery import queue
from sessions_app.delivery.reply_drain import MARGIN, drain_replies, forget_promises, slot_key
from sessions_app.models import Message, ReplyState, Role
from tests.twilio_helpers import send_sms

pytestmark = pytest.mark.django_db
needs_redis = pytest.mark.skipif(not os.environ.get("REDIS_URL"), reason="needs a real Redis: set REDIS_URL")


@pytest.fixture
def tasks_run() -> Iterator[list[tuple[str, tuple[object, ...]]]]:
    """(name, args) of every task that starts while the test runs."""
    started: list[tuple[str, tuple[object, ...]]] = []

    def record(sender: object = None, args: tuple[object, ...] = (), **kwargs: object) -> None:
        started.append((getattr(sender, "name", ""), tuple(args)))

    task_prerun.connect(record, weak=False)
    yield started
    task_prerun.disconnect(record)


@pytest.fixture
def no_promises(settings) -> Iterator[None]:
    keys = [slot_key(slot) for slot in range(settings.REPLY_DRAINS)]
    cache.delete_many(keys)
    yield
    cache.delete_many(keys)


def drains(tasks_run: list[tuple[str, tuple[object, ...]]]) -> list[tuple[object, ...]]:
    return [args for name, args in tasks_run if name == queue.DRAIN_REPLIES]


def owed(count: int, client) -> list[Message]:
    """`count` inbound texts stored with their replies owed (on-commit callbacks not run)."""
    for number in range(count):
        send_sms(client, f"+1555000{number:04d}", f"Hello {number}")
    return list(Message.objects.filter(reply_state=ReplyState.OWED).order_by("created_at"))


def test_a_committed_text_starts_a_drain_that_answers_it(
    client, django_capture_on_commit_callbacks, tasks_run, no_promises
):
    with django_capture_on_commit_callbacks(execute=True):
        send_sms(client, "+15550001111", "Hello")
    assert drains(tasks_run) == [(0,)]
    inbound = Message.objects.get(role=Role.CONTACT)
    assert inbound.reply_state == ReplyState.DONE
    assert Message.objects.filter(in_reply_to=inbound).count() == 1


@needs_redis
def test_a_commit_queues_nothing_while_a_drain_has_promised_to_claim_again(
    client, django_capture_on_commit_callbacks, tasks_run, no_promises
):
    cache.set(slot_key(1), time.time() + 30, timeout=30)  # a running drain's promise
    with django_capture_on_commit_callbacks(execute=True):
        send_sms(client, "+15550001111", "Hello")
    assert drains(tasks_run) == []
    inbound = Message.objects.get(role=Role.CONTACT)
    assert inbound.reply_state == ReplyState.OWED  # the promised claim is the drain's to make
    assert drain_replies(1) == 1
    inbound.refresh_from_db()
    assert inbound.reply_state == ReplyState.DONE


@needs_redis
def test_a_promise_about_to_run_out_is_not_relied_on(
    client, django_capture_on_commit_callbacks, tasks_run, no_promises
):
    cache.set(slot_key(0), time.time() + MARGIN / 2, timeout=30)
    with django_capture_on_commit_callbacks(execute=True):
        send_sms(client, "+15550001111", "Hello")
    assert drains(tasks_run) == [(1,)]  # a slot of its own: slot 0 is still held
    assert Message.objects.get(role=Role.CONTACT).reply_state == ReplyState.DONE


@needs_redis
def test_a_process_reads_a_promise_once_and_relies_on_it_until_it_runs_out(
    client, django_capture_on_commit_callbacks, tasks_run, no_promises
):
    with time_machine.travel("2026-06-01 12:00:00+00:00", tick=False) as clock:
        cache.set(slot_key(0), time.time() + 10, timeout=60)
        with django_capture_on_commit_callbacks(execute=True):
            send_sms(client, "+15550001111", "one")
        cache.delete(slot_key(0))  # the cache is not read again: the process remembers the promise
        clock.shift(5)
        with django_capture_on_commit_callbacks(execute=True):
            send_sms(client, "+15550002222", "two")
        assert drains(tasks_run) == []
        clock.shift(5)  # the promise has run out
        with django_capture_on_commit_callbacks(execute=True):
            send_sms(client, "+15550003333", "three")
    assert drains(tasks_run) == [(0,)]
    assert not Message.objects.filter(reply_state=ReplyState.OWED).exists()  # the drain took all three


def test_a_drain_answers_every_owed_text_oldest_first_then_stops(client):
    inbound = owed(3, client)
    assert drain_replies(0) == 3
    replies = Message.objects.filter(role=Role.AGENT).order_by("created_at", "id")
    assert [reply.in_reply_to_id for reply in replies] == [message.pk for message in inbound]
    assert drain_replies(0) == 0


def test_a_drain_leaves_a_text_waiting_out_its_retry_to_that_retry(client):
    waiting, fresh = owed(2, client)
    Message.objects.filter(pk=waiting.pk).update(reply_attempts=1)  # failed once, retry queued
    assert drain_replies(0) == 1
    waiting.refresh_from_db()
    fresh.refresh_from_db()
    assert (waiting.reply_state, fresh.reply_state) == (ReplyState.OWED, ReplyState.DONE)


@needs_redis
def test_a_drain_that_finds_a_backlog_starts_another_in_a_free_slot(client, settings, tasks_run, no_promises):
    settings.REPLY_DRAINS = 2
    settings.REPLY_DRAIN_LINGER_MS = 300  # drains promise, so their slots are seen taken
    owed(3, client)
    assert drain_replies(0) == 1  # the drain it started (inline here) took the other two
    assert drains(tasks_run) == [(1,)]  # one more drain, and no more than the slots allow
    assert Message.objects.filter(role=Role.AGENT).count() == 3
    assert not Message.objects.filter(reply_state=ReplyState.OWED).exists()


def test_without_a_shared_cache_every_commit_starts_a_drain(
    client, settings, django_capture_on_commit_callbacks, tasks_run
):
    settings.REDIS_URL = ""
    for number in range(2):
        with django_capture_on_commit_callbacks(execute=True):
            send_sms(client, f"+1555000{number:04d}", "Hello")
    assert drains(tasks_run) == [(0,), (0,)]
    assert Message.objects.filter(role=Role.AGENT).count() == 2


@needs_redis
@pytest.mark.django_db(transaction=True)
def test_two_drains_at_once_answer_each_text_exactly_once(client, no_promises):
    cache.set(slot_key(2), time.time() + 30, timeout=30)  # so the commits start no drain
    inbound = owed(30, client)
    assert len(inbound) == 30
    forget_promises()
    cache.delete(slot_key(2))
    counts: list[int] = []
    errors: list[BaseException] = []

    def run(slot: int) -> None:
        try:
            counts.append(drain_replies(slot))
        except BaseException as exc:
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(slot,)) for slot in (0, 1)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert errors == []
    assert sum(counts) == 30
    answered = list(Message.objects.filter(role=Role.AGENT).values_list("in_reply_to_id", flat=True))
    assert sorted(answered) == sorted(message.pk for message in inbound)


@needs_redis
@pytest.mark.django_db(transaction=True)
def test_a_drain_keeps_claiming_until_its_promise_and_answers_what_came_meanwhile(
    client, settings, tasks_run, no_promises
):
    settings.REPLY_DRAIN_LINGER_MS = 1500
    result: list[int] = []

    def run() -> None:
        try:
            result.append(drain_replies(0))
        finally:
            connection.close()

    drain = threading.Thread(target=run)
    drain.start()
    deadline = time.monotonic() + 10
    while cache.get(slot_key(0)) is None and time.monotonic() < deadline:
        time.sleep(0.01)  # until the drain has written its promise
    assert send_sms(client, "+15550001111", "Hello").status_code == 200  # commits at once here
    drain.join(timeout=30)
    assert result == [1]  # the idle drain took it
    assert drains(tasks_run) == []  # and the commit relied on its promise
    assert Message.objects.get(role=Role.CONTACT).reply_state == ReplyState.DONE
    assert cache.get(slot_key(0)) is None  # a drain that stops withdraws its promise


def test_a_drain_with_work_hands_over_to_a_successor_once_its_run_time_is_up(client, tasks_run):
    owed(3, client)
    # Past its run time after the first text, the drain queues its successor (run inline here, with
    # the default run time: it answers the other two) and stops.
    assert drain_replies(0, run_time=0) == 1
    assert drains(tasks_run) == [(0,)]
    assert Message.objects.filter(role=Role.AGENT).count() == 3


def test_an_idle_drain_stops_without_a_successor(tasks_run):
    assert drain_replies(0, run_time=0) == 0
    assert drains(tasks_run) == []
