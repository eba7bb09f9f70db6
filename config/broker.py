"""Celery's Redis transport, publishing through one Redis client per kombu channel.

kombu's Redis channel builds a new `redis.Redis` client around its connection pool for every message
it publishes (`Channel.conn_or_acquire`, called by `_put`). The connection comes from the pool
either way; the client object is what costs: redis-py's constructor sets up its command table on
each call. Here a channel builds that client once and reuses it for as long as its pool lives (a
channel whose pool is dropped, after a fork or a reconnect, builds a new one). A redis-py client
is safe to share: each command takes a connection from the pool and gives it back.

Measured: 0.75 of 7.04 million instructions per inbound SMS webhook (10.6 %), the largest single
cost in the request after the socket broadcast (valgrind's callgrind over 200 signed SMS called
in-process after 100 to warm up, the calls of `bench/ingest_cpu.py`; docs/benchmarks.md,
"2026-12-04"). `config/settings.py` names this transport for `redis://` broker URLs only
(`CELERY_BROKER_TRANSPORT`); TLS (`rediss://`) and Sentinel URLs keep kombu's own.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from kombu.transport import redis as kombu_redis


class Channel(kombu_redis.Channel):
    _publishing_client: Any = None

    @contextmanager
    def conn_or_acquire(self, client: Any = None) -> Iterator[Any]:
        if client is not None:
            yield client
            return
        cached = self._publishing_client
        if cached is None or cached.connection_pool is not self.pool:
            with super().conn_or_acquire() as fresh:
                cached = self._publishing_client = fresh
        yield cached


class Transport(kombu_redis.Transport):
    Channel = Channel
