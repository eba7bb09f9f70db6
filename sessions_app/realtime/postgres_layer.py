"""channels-postgres, the channel layer without Redis, with one connection pool per event loop.

channels-postgres (`channels_postgres.core.PostgresChannelLayer`) keeps one connection pool for the
whole process, bound to the event loop that first used it. Every process of ours uses the layer
from more than one loop: sockets are served on the ASGI server's loop, while synchronous code (a
webhook, a worker task, a socket's own message stored in a thread) publishes from the publisher's
loop (`publish.py`); and the in-process socket tests run each test on a loop of its own. On the
process-wide pool, `tests/realtime/test_layers.py`'s channels-postgres test hung at the end of its
loop, and the in-process socket tests hung after the first (docs/realtime.md).

So this layer is channels-postgres's own, but for where its database operations get a connection:
a pool per event loop (shared by the layer instances of a process), opened on first use in that
loop and closed by `close_pools()` before the loop ends. Everything else (LISTEN/NOTIFY, its
tables, its message format) is the library's, and the order in which the listener starts.

The library's listener reads the messages already queued and only then opens its connection and
LISTENs: a message sent between the two is neither in what it read nor notified to it, and is lost
(a socket that joins as its process starts misses the first event: a socket test lost one so in a
loaded full run, 2026-12-05). Ours LISTENs first and then reads the queue, skipping a
notification for a message it already took from the queue.

psycopg's pool workers swallow the cancellation a closing loop sends them, so a loop that ends with
a pool still open never finishes closing. Hence: a pool is closed when its opening is cancelled (a
socket refused at once cancels its receive mid-connect), and once a loop has closed its pools no
new one opens on it.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import weakref
from typing import Any

import psycopg
import psycopg_pool
from channels_postgres.core import PostgresChannelLayer as LibraryLayer
from channels_postgres.db import DatabaseLayer

Pool = psycopg_pool.AsyncConnectionPool
_pools: dict[tuple[asyncio.AbstractEventLoop, str], Pool] = {}
_opening: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Lock] = weakref.WeakKeyDictionary()
_closed: weakref.WeakSet[asyncio.AbstractEventLoop] = weakref.WeakSet()


async def _configure(connection: psycopg.AsyncConnection[Any]) -> None:
    # As channels-postgres configures its own pool's connections.
    await connection.set_autocommit(True)


class _PerLoopDatabaseLayer(DatabaseLayer):
    async def get_db_pool(self, db_params: dict[str, Any]) -> Pool:
        loop = asyncio.get_running_loop()
        conninfo = psycopg.conninfo.make_conninfo(conninfo="", **db_params)
        pool = _pools.get((loop, conninfo))
        if pool is not None:
            return pool
        # A loop that ended without closing its pools cannot close them any more: dropped, the pools
        # and their connections are collected with it.
        for key in [key for key in _pools if key[0].is_closed()]:
            del _pools[key]
        async with _opening.setdefault(loop, asyncio.Lock()):
            pool = _pools.get((loop, conninfo))
            if pool is None:
                if loop in _closed:
                    raise RuntimeError("the channel layer's connections on this event loop are closed")
                pool = Pool(conninfo=conninfo, open=False, configure=_configure, **self.psycopg_options)
                try:
                    await pool.open(wait=True)
                except BaseException:
                    await pool.close()
                    raise
                # Shared only once open: a caller that found it before would hold a pool that this
                # opening, if cancelled, closes under it (PoolClosed in another socket's receive).
                _pools[loop, conninfo] = pool
        return pool


async def close_pools() -> None:
    """Close the running loop's pools; none opens on this loop afterwards."""
    loop = asyncio.get_running_loop()
    _closed.add(loop)
    async with _opening.setdefault(loop, asyncio.Lock()):  # waits for a pool being opened
        pools = [_pools.pop(key) for key in [key for key in _pools if key[0] is loop]]
    for pool in pools:
        await pool.close()


class PostgresChannelLayer(LibraryLayer):  # type: ignore[misc]
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.django_db: DatabaseLayer = _PerLoopDatabaseLayer(
            kwargs.get("PSYCOPG_OPTIONS", {}),
            self.db_params,
            logger=logging.getLogger("channels_postgres.core"),
        )

    async def listen_to_all_channels(self) -> None:
        """The library's listener, but LISTENing before it reads what is already queued."""
        conninfo = psycopg.conninfo.make_conninfo(conninfo="", **self.db_params)
        async with await psycopg.AsyncConnection.connect(conninfo=conninfo, autocommit=True) as connection:
            await connection.execute("LISTEN channels_postgres_messages;")
            # Notifications from here on wait in the connection until read below.
            queued = await self.django_db.retrieve_non_expired_queued_messages()
            taken: set[str] = set()
            for message_id, channel, message, expiry in sorted(queued, key=lambda row: int(row[0])):
                payload = f"{message_id}:{channel}:{base64.b64encode(message).decode()}:{expiry}"
                self._get_or_create_queue(channel).put_nowait(payload)
                taken.add(message_id)
            assert self.listener_task_is_running is not None
            self.listener_task_is_running.set()
            async for event in connection.notifies():
                if event.payload == "1:shutdown":
                    self.listener_task_is_running.clear()
                    break
                message_id, channel = event.payload.split(":")[:2]
                if message_id in taken:
                    taken.discard(message_id)  # an id is notified at most once
                    continue
                # As the library: without the channel's advisory lock another process reads it.
                if self._channel_advisory_locks.get(channel, False):
                    self._get_or_create_queue(channel).put_nowait(event.payload)

    async def close_pools(self) -> None:
        """Close this loop's connections (the ASGI server's shutdown, the end of a test's loop)."""
        await close_pools()
