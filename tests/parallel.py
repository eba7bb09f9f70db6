"""What the suite's parallel workers must not share (pytest-xdist; `run.py test` runs two:
docs/testing.md): each worker gets its own Redis db, its own slice of each port range and its own
names for the databases a test creates. Outside xdist (plain `pytest`, `-n 0`) nothing changes.

Standard library only: tests/settings.py uses it before Django's settings exist.
"""

from __future__ import annotations

import os
from urllib.parse import urlsplit, urlunsplit

REDIS_DATABASES = 16  # Redis's default `databases`: dbs 0-15


def worker() -> str:
    """This xdist worker's id ("gw0", "gw1", …), or "" when the suite runs in one process."""
    return os.environ.get("PYTEST_XDIST_WORKER", "")


def worker_index() -> int:
    return int(worker().removeprefix("gw") or 0)


def worker_count() -> int:
    return int(os.environ.get("PYTEST_XDIST_WORKER_COUNT") or 1) if worker() else 1


def worker_ports(ports: range) -> range:
    """This worker's slice of `ports`, so that two workers never race for one free port."""
    size = len(ports) // worker_count()
    if size == 0:
        raise RuntimeError(f"{worker_count()} workers cannot share the {len(ports)} ports from {ports.start}")
    start = ports.start + worker_index() * size
    return range(start, start + size)


def worker_database(name: str) -> str:
    """`name` for a database a test creates, suffixed like pytest-django's test databases
    (`test_x_gw0`) so that two workers never create, use or drop the same one."""
    return f"{name}_{worker()}" if worker() else name


def worker_redis_url(url: str) -> str:
    """`url` on Redis db (its own db + this worker's index): keys, queues and the cache of one
    worker (and of the servers it starts) are out of the others' reach, FLUSHDB included."""
    parts = urlsplit(url)
    if parts.scheme not in ("redis", "rediss") or parts.query:
        raise RuntimeError(f"REDIS_URL must be redis://host:port/db to give each test worker a db: {url!r}")
    db = int(parts.path.strip("/") or 0) + worker_index()
    if db >= REDIS_DATABASES:
        raise RuntimeError(
            f"REDIS_URL {url!r} with {worker_count()} test workers needs Redis db {db}; Redis has 0-"
            f"{REDIS_DATABASES - 1}: use a lower db in REDIS_URL or fewer workers (-n)"
        )
    return urlunsplit(parts._replace(path=f"/{db}"))
