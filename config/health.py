"""Health endpoints for load balancers and orchestrators (docs/scaling.md, README "Production").

- `/healthz`: the process is up and serving requests (liveness). It touches nothing else, so a
  database outage never makes an orchestrator restart every web process at once.
- `/readyz`: the database and the task broker both answer within `READY_TIMEOUT` seconds
  (readiness): 200, or 503 naming which did not, so a load balancer takes the node out of rotation.

Both are plain views outside the API: no authentication (a probe has no credentials; they reveal
only "ok" or the name of the dependency that failed, never an address or an error text), and exempt
from the HTTPS redirect (`SECURE_REDIRECT_EXEMPT`), since probes talk plain http to the node.

Each check runs in a small thread pool and is waited for at most `READY_TIMEOUT`: a database that
accepts connections but never answers (a full `max_connections`, a hung pooler) would otherwise hold
the probe for the TCP timeout. A check that hangs keeps its thread until its socket gives up; the
pool is bounded, so hung checks never pile up threads: further probes wait in its queue and time
out, which is the right answer while the dependency hangs.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, wait

from celery import current_app
from django.db import connection
from django.http import HttpRequest, HttpResponse

log = logging.getLogger(__name__)

READY_TIMEOUT = 1.0  # seconds, for each check (they run at the same time)

_checks_pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="readyz")


def database_answers() -> None:
    """A new connection to the default database runs `SELECT 1` (the pooler's path, if any)."""
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    finally:
        # The pool thread is not a request: nothing else would ever close its connection.
        connection.close()


def broker_answers() -> None:
    """The task broker accepts a connection and a channel (for Redis, that includes a PING)."""
    with current_app.connection_for_write() as broker:
        broker.ensure_connection(max_retries=1, timeout=READY_TIMEOUT)
        broker.default_channel  # noqa: B018 - opening the channel is the check


CHECKS: dict[str, Callable[[], None]] = {"database": database_answers, "broker": broker_answers}


def healthz(request: HttpRequest) -> HttpResponse:
    return HttpResponse("ok\n", content_type="text/plain")


def readyz(request: HttpRequest) -> HttpResponse:
    futures = {name: _checks_pool.submit(check) for name, check in CHECKS.items()}
    wait(futures.values(), timeout=READY_TIMEOUT)  # one deadline for all checks
    results: dict[str, str] = {}
    for name, future in futures.items():
        if not future.done():
            future.cancel()  # if it is still queued behind hung checks
            results[name] = f"no answer within {READY_TIMEOUT:g} s"
        elif future.exception() is not None:
            log.warning("Readiness: the %s check failed: %s", name, type(future.exception()).__name__)
            results[name] = "unreachable"
        else:
            results[name] = "ok"
    failed = [name for name, result in results.items() if result != "ok"]
    body = {"status": "not ready: " + ", ".join(failed) if failed else "ready", "checks": results}
    return HttpResponse(
        json.dumps(body) + "\n", status=503 if failed else 200, content_type="application/json"
    )
