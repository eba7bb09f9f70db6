"""Channel layers: Redis pub/sub with a cheap synchronous publish, and one for the embedded default.

`RedisPubSubRelayLayer` is channels-redis's pub/sub layer plus `group_send_many_sync`, used by
`broadcast` for every stored message. The calling thread (a webhook's, a task's) only queues the
message's groups (session, staff, business); one thread per process publishes whatever has gathered
as one pipelined round trip. `group_send` would take an event loop, a thread hop and a round trip
per group (about a millisecond of CPU per message, measured), and even one round trip from the
request would keep a webhook's answer waiting on Redis. Under load one pipeline carries the
broadcasts of many messages; one thread keeps them in the order they were queued.

`DatabaseRelayChannelLayer` is for the embedded default, where there is no Redis.

Django Channels' in-memory layer reaches only sockets in its own process, but replies are produced
by the worker, another process. This layer writes every group message to a table (`RelayEvent`);
each process that holds sockets tails that table and delivers new rows to its local groups. One
path for every message, local or not, so delivery order is the table's order.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from datetime import timedelta
from typing import Any

import redis
from channels.db import database_sync_to_async
from channels.layers import InMemoryChannelLayer
from channels_redis.pubsub import RedisPubSubChannelLayer
from django.db.models import Max
from django.utils import timezone

from sessions_app.batched_enqueue import BatchedEnqueue, flush_at_exit
from sessions_app.models import RelayEvent

log = logging.getLogger(__name__)

# At most this many group messages in one pipeline: bounds the memory of one round trip.
PUBLISH_BATCH = 500
# While messages come back to back, a process publishes at most once per this many seconds, so one
# round trip carries several messages' broadcasts; no event waits longer than this for its batch.
PUBLISH_LINGER = 0.02


class RedisPubSubRelayLayer(RedisPubSubChannelLayer):
    """channels-redis pub/sub, with a synchronous publish of one message to several groups."""

    def __init__(self, hosts: list[str], prefix: str = "asgi", **kwargs: Any) -> None:
        if len(hosts) != 1:
            # Several shards would need channels-redis's hashing of group names to hosts.
            raise ValueError("RedisPubSubRelayLayer takes exactly one Redis host")
        super().__init__(hosts=hosts, prefix=prefix, **kwargs)
        self._host = hosts[0]
        self._prefix = prefix
        self._client: redis.Redis | None = None
        self._outbox: BatchedEnqueue[tuple[str, dict[str, Any]]] = BatchedEnqueue(
            "broadcast", self._publish, max_batch=PUBLISH_BATCH, linger=PUBLISH_LINGER
        )
        flush_at_exit(self._outbox)

    def group_send_many_sync(self, messages: list[tuple[str, dict[str, Any]]]) -> None:
        """Queue `messages` (group, message) for this process's publisher; returns at once."""
        self._outbox.add_all(messages)

    def flush_sync(self, timeout: float = 5.0) -> bool:
        """Wait until everything queued so far was published (or failed to be)."""
        return self._outbox.flush(timeout)

    def _publish(self, messages: list[tuple[str, dict[str, Any]]]) -> None:
        if self._client is None:
            # Bounded waits: a stalled Redis must not hold the publisher (and the queue) for long.
            self._client = redis.Redis.from_url(self._host, socket_connect_timeout=2, socket_timeout=2)
        with self._client.pipeline(transaction=False) as pipe:
            for group, message in messages:
                # The channel and the bytes channels-redis's own group_send publishes, so sockets
                # served by the stock layer's receivers get them unchanged.
                pipe.publish(f"{self._prefix}__group__{group}", self.serialize(message))
            pipe.execute()


class DatabaseRelayChannelLayer(InMemoryChannelLayer):
    poll_interval = 0.05
    batch_size = 500
    keep_for = timedelta(seconds=60)
    prune_every = 30.0

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._tail_task: asyncio.Task[None] | None = None
        self._last_id: int | None = None

    # Producers ---------------------------------------------------------------------------------
    def group_send_many_sync(self, messages: list[tuple[str, dict[str, Any]]]) -> None:
        """From synchronous code (a request, a worker task): one INSERT for all groups."""
        RelayEvent.objects.bulk_create(
            [
                RelayEvent(group=group, payload=message, session_id=message.get("session_id"))
                for group, message in messages
            ]
        )

    async def group_send(self, group: str, message: dict[str, Any]) -> None:
        await database_sync_to_async(self.group_send_many_sync)([(group, message)])

    # Consumers ---------------------------------------------------------------------------------
    async def group_add(self, group: str, channel: str) -> None:
        await super().group_add(group, channel)
        if self._tail_task is None or self._tail_task.done():
            self._tail_task = asyncio.ensure_future(self._tail())

    async def _tail(self) -> None:
        if self._last_id is None:
            self._last_id = await database_sync_to_async(_newest_id)()
        last_prune = time.monotonic()
        while True:
            try:
                rows = await database_sync_to_async(_rows_after)(self._last_id, self.batch_size)
                for row_id, group, payload in rows:
                    self._last_id = row_id
                    await InMemoryChannelLayer.group_send(self, group, payload)
                if time.monotonic() - last_prune > self.prune_every:
                    last_prune = time.monotonic()
                    await database_sync_to_async(_prune)(self.keep_for)
            except Exception:  # the database may be briefly unavailable; keep tailing
                log.exception("Relay tail failed; retrying")
                rows = []
                await asyncio.sleep(1)
            if len(rows) < self.batch_size:
                await asyncio.sleep(self.poll_interval)

    async def flush(self) -> None:
        if self._tail_task is not None:
            self._tail_task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._tail_task
            self._tail_task = None
        self._last_id = None
        await super().flush()


def _newest_id() -> int:
    return RelayEvent.objects.aggregate(newest=Max("id"))["newest"] or 0


def _rows_after(last_id: int, limit: int) -> list[tuple[int, str, dict[str, Any]]]:
    return list(
        RelayEvent.objects.filter(id__gt=last_id).order_by("id").values_list("id", "group", "payload")[:limit]
    )


def _prune(keep_for: timedelta) -> None:
    RelayEvent.objects.filter(created_at__lt=timezone.now() - keep_for).delete()
