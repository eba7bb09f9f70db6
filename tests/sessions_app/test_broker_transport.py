"""The Redis broker transport (config/broker.py): one publishing client per channel, messages intact."""

from __future__ import annotations

import os

import pytest
import redis
from celery import Celery
from django.conf import settings
from kombu import Producer

from config import broker

pytestmark = pytest.mark.skipif(
    not os.environ.get("REDIS_URL"), reason="needs a real Redis: set REDIS_URL to run"
)

QUEUE = "test-broker-transport"


@pytest.fixture
def app() -> Celery:
    app = Celery("broker-test", broker=os.environ["REDIS_URL"])
    app.conf.broker_transport = "config.broker:Transport"
    return app


def test_settings_name_the_transport_for_a_redis_broker() -> None:
    if settings.CELERY_BROKER_URL.startswith("redis://"):
        assert settings.CELERY_BROKER_TRANSPORT == "config.broker:Transport"
    else:
        assert not hasattr(settings, "CELERY_BROKER_TRANSPORT")


def test_it_publishes_every_message_through_one_client(app: Celery) -> None:
    plain = redis.Redis.from_url(os.environ["REDIS_URL"])
    plain.delete(QUEUE)
    try:
        with app.connection_for_write() as connection:
            channel = connection.default_channel
            assert isinstance(channel, broker.Channel)
            producer = Producer(channel)
            clients = []
            for number in range(3):
                producer.publish({"n": number}, routing_key=QUEUE, serializer="json")
                with channel.conn_or_acquire() as client:
                    clients.append(client)
            assert clients[0] is clients[1] is clients[2]
            assert plain.llen(QUEUE) == 3
            # A client handed in is used as it is.
            with channel.conn_or_acquire(plain) as given:
                assert given is plain
    finally:
        plain.delete(QUEUE)


def test_a_new_connection_pool_gets_a_new_client(app: Celery) -> None:
    with app.connection_for_write() as connection:
        channel = connection.default_channel
        with channel.conn_or_acquire() as first:
            assert first.connection_pool is channel.pool
        # What a fork or a reconnect does to the channel's pool.
        channel._pool = None
        with channel.conn_or_acquire() as second:
            assert second is not first
            assert second.connection_pool is channel.pool
            assert second.ping()
