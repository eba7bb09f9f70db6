"""channels-postgres, the channel layer without Redis, with one connection pool per event loop.

channels-postgres (`channels_postgres.core.PostgresChannelLayer`) keeps one connection pool for the
whole process, bound to the event loop that first used it. Every process of ours uses the layer
from more than one loop: sockets are served on the ASGI server's loop, while synchronous code (a
webhook, a worker task, a socket's own message stored in a thread) publishes from the publisher's
loop (`publish.py`); and the in-process socket tests run each test on a loop of its own. On the
process-wide pool, `tests/realtime/test_layers.py`'s channels-postgres test hung at the end of its
loop, and the in-process socket tests hung after the first (docs/realtime.md).

So this layer is channels-postgres's own, but for where its database operations get a connection:
a pool per event loop, opened on first use in that loop, and dropped with the loop. Everything else
(LISTEN/NOTIFY, its tables, its message format) is the library's.
"""

from __future__ import annotations

import asyncio
from typing import Any

import psycopg
import psycopg_pool
from channels_postgres.core import PostgresChannelLayer as LibraryLayer
from channels_postgres.db import DatabaseLayer


async def _configure(connection: psycopg.AsyncConnection[Any]) -> None:
    # As channels-postgres configures its own pool's connections.
    await connection.set_autocommit(True)


class _PerLoopDatabaseLayer(DatabaseLayer):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._pools: dict[asyncio.AbstractEventLoop, psycopg_pool.AsyncConnectionPool] = {}
        self._opening: dict[asyncio.AbstractEventLoop, asyncio.Lock] = {}

    async def get_db_pool(self, db_params: dict[str, Any]) -> psycopg_pool.AsyncConnectionPool:
        loop = asyncio.get_running_loop()
        pool = self._pools.get(loop)
        if pool is not None:
            return pool
        # A loop that has closed cannot close its pool any more: dropped, the pool and its connections
        # are collected (and the connections closed) with it.
        for gone in [other for other in self._pools if other.is_closed()]:
            del self._pools[gone]
            self._opening.pop(gone, None)
        lock = self._opening.setdefault(loop, asyncio.Lock())
        async with lock:
            pool = self._pools.get(loop)
            if pool is None:
                pool = psycopg_pool.AsyncConnectionPool(
                    conninfo=psycopg.conninfo.make_conninfo(conninfo="", **db_params),
                    open=False,
                    configure=_configure,
                    **self.psycopg_options,
                )
                await pool.open(wait=True)
                self._pools[loop] = pool
        return pool

    async def close_pool(self) -> None:
        """Close the running loop's pool. A loop must close its pool before it ends: psycopg's pool
        workers outlive the cancellation a closing loop sends them, and the loop waits on them."""
        pool = self._pools.pop(asyncio.get_running_loop(), None)
        if pool is not None:
            await pool.close()


class PostgresChannelLayer(LibraryLayer):  # type: ignore[misc]
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.django_db = _PerLoopDatabaseLayer(
            kwargs.get("PSYCOPG_OPTIONS", {}), self.db_params, logger=self.django_db.logger
        )

    async def close_pools(self) -> None:
        """Close this loop's connections (the ASGI server's shutdown, the end of a test's loop)."""
        await self.django_db.close_pool()
