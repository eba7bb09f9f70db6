"""The Redis layer's synchronous publish reaches sockets of this layer and of channels-redis's own."""

from __future__ import annotations

import asyncio
import os
import time
import uuid

import pytest
from asgiref.sync import sync_to_async
from channels_redis.pubsub import RedisPubSubChannelLayer

from sessions_app.realtime.layers import RedisPubSubRelayLayer

REDIS_URL = os.environ.get("REDIS_URL", "")
needs_redis = pytest.mark.skipif(not REDIS_URL, reason="needs a real Redis: set REDIS_URL to run")


def event(number: int) -> dict[str, object]:
    return {"type": "relay.event", "event": "message_received", "payload": {"n": number, "text": "héllo"}}


@needs_redis
@pytest.mark.parametrize("receiving_layer", [RedisPubSubRelayLayer, RedisPubSubChannelLayer])
def test_one_pipelined_publish_reaches_every_group_in_order(receiving_layer):
    prefix = f"test{uuid.uuid4().hex[:8]}"
    sender = RedisPubSubRelayLayer(hosts=[REDIS_URL], prefix=prefix)
    receiver = receiving_layer(hosts=[REDIS_URL], prefix=prefix)

    async def scenario() -> list[dict[str, object]]:
        staff = await receiver.new_channel()
        session = await receiver.new_channel()
        await receiver.group_add("staff", staff)
        await receiver.group_add("session.one", session)
        await sync_to_async(sender.group_send_many_sync)(
            [("session.one", event(1)), ("staff", event(1)), ("staff", event(2)), ("nobody", event(3))]
        )
        got = [await asyncio.wait_for(receiver.receive(session), 5)]
        got += [await asyncio.wait_for(receiver.receive(staff), 5) for _ in range(2)]
        await receiver.flush()
        return got

    assert asyncio.run(scenario()) == [event(1), event(1), event(2)]


def test_it_refuses_several_hosts():
    with pytest.raises(ValueError, match="exactly one Redis host"):
        RedisPubSubRelayLayer(hosts=["redis://a", "redis://b"])


def test_a_broadcast_never_holds_or_fails_the_caller_when_redis_is_unreachable(caplog):
    layer = RedisPubSubRelayLayer(hosts=["redis://127.0.0.1:1"])  # nothing listens on port 1
    started = time.monotonic()
    layer.group_send_many_sync([("staff", event(1)), ("session.one", event(1))])
    assert time.monotonic() - started < 0.5  # queued, not sent from the caller's thread
    assert layer.flush_sync(timeout=10)  # the publisher tried, failed and moved on
    assert "Could not queue broadcast for 2 item(s)" in caplog.text
