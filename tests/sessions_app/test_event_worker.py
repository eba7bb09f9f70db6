"""A real Celery worker killed with SIGKILL in the middle of a delivery loses no event: the claim it
held runs out and the recovery task delivers the event (again, with the same webhook-id)."""

from __future__ import annotations

import os
import signal
from datetime import timedelta

import pytest
import time_machine
from django.core.cache import cache
from django.utils import timezone

from config.celery_app import app as celery_app
from sessions_app.delivery.outbound import record_outbound_message
from sessions_app.events import dispatch
from sessions_app.models import Delivery, Event, Role
from sessions_app.tasks import recover_event_deliveries
from tests.event_receiver import running_receiver
from tests.factories import EventEndpointFactory, SessionFactory
from tests.sessions_app.test_worker import process_env, start, stop, wait_until, worker_command

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(not os.environ.get("REDIS_URL"), reason="needs a real Redis: set REDIS_URL to run"),
]


@pytest.fixture(autouse=True)
def _no_kick_flags():
    """The delivery tasks' flags live in the shared cache (Redis), which outlives each test."""
    cache.clear()
    yield
    cache.clear()


@pytest.fixture
def receiver(settings):
    settings.EVENT_WEBHOOKS_ALLOW_PRIVATE = True
    dispatch.close_pool()
    yield from running_receiver()
    dispatch.close_pool()


def test_a_worker_killed_mid_delivery_loses_nothing(receiver, tmp_path):
    endpoint = EventEndpointFactory(url=receiver.url, event_types=["message.created"])
    receiver.secrets = [endpoint.secret]
    receiver.delay = 30  # the worker is inside the POST when it dies
    celery_app.control.purge()
    celery_app.conf.task_always_eager = False
    try:
        record_outbound_message(SessionFactory(), "survives", role=Role.STAFF)  # queued on commit
    finally:
        celery_app.conf.task_always_eager = True
    event = Event.objects.get()

    env = {**process_env(tmp_path, os.environ["REDIS_URL"]), "EVENT_WEBHOOKS_ALLOW_PRIVATE": "true"}
    log = tmp_path / "worker.log"
    worker = start(worker_command(), env, log)
    try:
        wait_until(lambda: receiver.arrived == [event.webhook_id], 60, "the delivery to start", [log])
        assert Delivery.objects.get().state == "sending"
        worker.send_signal(signal.SIGKILL)
        worker.wait(timeout=10)
    finally:
        stop(worker)
    assert receiver.delivered() == []
    assert Delivery.objects.get().state == "sending"  # the claim outlived its worker

    receiver.delay = 0
    recover_event_deliveries()  # within the lease: left alone (the worker might still be sending)
    assert Delivery.objects.get().state == "sending"
    with time_machine.travel(timezone.now() + dispatch.LEASE + timedelta(seconds=1), tick=True):
        recover_event_deliveries()
        (received,) = receiver.delivered()
        assert received.verified
    assert received.webhook_id == event.webhook_id and received.body == event.body.encode()
    delivery = Delivery.objects.get()
    assert delivery.state == "delivered" and delivery.attempts == 1
