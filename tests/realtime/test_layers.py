"""A broadcast from synchronous code (a webhook, a worker task) reaches sockets of another process
through the configured layer: channels-redis with Redis, channels-postgres without it."""

from __future__ import annotations

import asyncio
import os
import time
import uuid

import pytest
from channels_redis.pubsub import RedisPubSubChannelLayer

from sessions_app.realtime import publish
from sessions_app.realtime.groups import STAFF_GROUP

REDIS_URL = os.environ.get("REDIS_URL", "")
needs_redis = pytest.mark.skipif(not REDIS_URL, reason="needs a real Redis: set REDIS_URL to run")


def wait_for(condition, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


@needs_redis
def test_broadcasts_from_synchronous_code_reach_a_channels_redis_receiver_in_order(settings):
    prefix = f"test{uuid.uuid4().hex[:8]}"
    settings.CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer",
            "CONFIG": {"hosts": [REDIS_URL], "prefix": prefix},
        }
    }
    receiver = RedisPubSubChannelLayer(hosts=[REDIS_URL], prefix=prefix)
    joined = asyncio.Event()
    got: list[dict[str, object]] = []

    async def listen() -> None:
        staff = await receiver.new_channel()
        await receiver.group_add(STAFF_GROUP, staff)
        joined.set()
        for _ in range(3):
            got.append(await asyncio.wait_for(receiver.receive(staff), 5))
        await receiver.flush()

    async def scenario() -> None:
        listener = asyncio.create_task(listen())
        await joined.wait()
        await asyncio.to_thread(lambda: [publish.sessions_swept(count, "abandoned") for count in (1, 2, 3)])
        await listener

    asyncio.run(scenario())
    assert [event["payload"] for event in got] == [  # type: ignore[index]
        {"count": 1, "status": "abandoned"},
        {"count": 2, "status": "abandoned"},
        {"count": 3, "status": "abandoned"},
    ]


@pytest.mark.django_db(transaction=True)
def test_broadcasts_from_synchronous_code_reach_a_channels_postgres_receiver_in_order(settings):
    """The layer without Redis (the embedded default): LISTEN/NOTIFY through the test database."""
    from sessions_app.realtime.postgres_layer import PostgresChannelLayer

    layer = settings.POSTGRES_CHANNEL_LAYER
    settings.CHANNEL_LAYERS = {"default": layer}
    receiver = PostgresChannelLayer(**layer["CONFIG"])
    got: list[dict[str, object]] = []

    async def scenario() -> None:
        staff = await receiver.new_channel()
        await receiver.group_add(STAFF_GROUP, staff)
        first = asyncio.create_task(receiver.receive(staff))  # starts its listener
        await asyncio.to_thread(lambda: [publish.sessions_swept(count, "abandoned") for count in (1, 2, 3)])
        got.append(await asyncio.wait_for(first, 10))
        for _ in range(2):
            got.append(await asyncio.wait_for(receiver.receive(staff), 10))
        await receiver.flush()

    asyncio.run(scenario())
    assert [event["payload"] for event in got] == [  # type: ignore[index]
        {"count": 1, "status": "abandoned"},
        {"count": 2, "status": "abandoned"},
        {"count": 3, "status": "abandoned"},
    ]


@pytest.mark.django_db(transaction=True)
def test_a_channels_postgres_listener_starting_misses_no_message_and_takes_none_twice(settings):
    """One message is sent just before the starting listener reads what is queued (it is both queued
    and notified), one just after (only notified): each arrives once, in order."""
    from sessions_app.realtime.postgres_layer import PostgresChannelLayer

    layer = settings.POSTGRES_CHANNEL_LAYER
    receiver = PostgresChannelLayer(**layer["CONFIG"])
    sender = PostgresChannelLayer(**layer["CONFIG"])
    read_queue = receiver.django_db.retrieve_non_expired_queued_messages

    async def scenario() -> list[dict[str, object]]:
        channel = await receiver.new_channel()

        async def read_between_two_sends() -> list[tuple[str, str, bytes, str]]:
            await sender.send(channel, {"type": "test", "n": 1})
            queued = await read_queue()
            await sender.send(channel, {"type": "test", "n": 2})
            return queued

        receiver.django_db.retrieve_non_expired_queued_messages = read_between_two_sends
        got = [await asyncio.wait_for(receiver.receive(channel), 10) for _ in range(2)]
        await sender.send(channel, {"type": "test", "n": 3})
        got.append(await asyncio.wait_for(receiver.receive(channel), 10))
        await receiver.flush()
        await receiver.close_pools()
        return got

    assert [message["n"] for message in asyncio.run(scenario())] == [1, 2, 3]
