"""Sending events: the delivery half of the outbox (docs/event-webhooks.md).

One task per endpoint (`deliver_due`) claims that endpoint's due deliveries in batches and POSTs them
one after another over kept-alive connections, each signed per Standard Webhooks. A claim marks its
rows `sending` in a short transaction of its own (`select_for_update(skip_locked=True)`, serialised
per endpoint by an advisory lock so two claims never split a session's events between them); the
answers are recorded in a second one. A worker killed in between leaves its rows `sending`:
`recover` hands them out again once `LEASE` has passed (at least once: the same `webhook-id`).

Order: a delivery is claimed only when no earlier event of its session is still owed to the same
endpoint and waiting (a retry not yet due, or a claim in flight); within a batch a failure holds the
session's later events back. Other sessions and other endpoints never wait for it.

Two statements are raw SQL, each where the ORM's form was a large share of the CPU per delivery
(`bench/event_webhooks.py --backlog 2000 --pool threads`, and `--rate 200` for the worker under
load; docs/event-webhooks.md, "Speed"): the claim (`_CLAIM`: the ORM's select_for_update and UPDATE
were a third of the worker's CPU under load) and the attempts' log (`_LOG_ATTEMPTS`: bulk_create
was a fifth at full batches). With the HTTP client (`client.py`) the worker went from 0.65 to 0.24
ms of CPU per delivery, PostgreSQL from 0.18 to 0.10 ms.
"""

from __future__ import annotations

import logging
import random
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, NamedTuple

from django.conf import settings
from django.core.cache import cache
from django.db import connection, transaction
from django.db.models import Exists, F, OuterRef, QuerySet
from django.utils import timezone
from standardwebhooks.webhooks import Webhook

from sessions_app.delivery import queue
from sessions_app.events import client
from sessions_app.events.models import Delivery, DeliveryAttempt, DeliveryState, Event, EventEndpoint
from sessions_app.events.record import KICK_TTL, kick, kick_key

log = logging.getLogger(__name__)

BATCH_SIZE = 100
TIMEOUT = 5.0  # seconds, per connect, read and write
# A batch stops sending after this long (what is left goes back, due): a claim's rows are then
# never `sending` for longer than BATCH_TIME + TIMEOUT, well inside the lease.
BATCH_TIME = 20.0
LEASE = timedelta(seconds=120)
# One task sends for at most this long, then queues its successor if work is left.
RUN_TIME = 25.0
# Seconds an endpoint that did not answer (refused, timed out) gets no task for new events.
REST_WHEN_UNREACHABLE = 5
# After a batch smaller than BATCH_SIZE, what a task waits before claiming again (more events come
# in meanwhile, so batches fill up while the latency stays well under a second).
LINGER = 0.2
# Seconds between a running task's reads of its endpoint (an edit in admin applies within this) and
# its refreshes of the kick flag (which lives KICK_TTL).
REFRESH = 1.0
RESPONSE_KEPT = 1024  # characters of an answer's body kept in the log
RESPONSE_READ = 64 * 1024  # read at most this much of an answer (the rest closes the connection)
DISABLE_AFTER = timedelta(days=5)
# Retries sooner than this are queued with a countdown; later ones wait for `recover` (beat).
COUNTDOWN_MAX = 60.0
JITTER = 0.1
NO_SEQUENCE = 2**62  # past every sequence: nothing is held
CLAIM_LOCK = 0x45564E54  # advisory lock namespace of the per-endpoint claim ("EVNT")
USER_AGENT = "conversation-sessions-webhooks/1"


def close_pool() -> None:
    """Drop every kept-alive connection (tests that change the address rule; shutdown)."""
    client.close_pool()


@dataclass
class Outcome:
    status: int | None
    duration_ms: int
    response: str = ""
    error: str = ""

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300

    @property
    def unreachable(self) -> bool:
        """No answer at all (refused, timed out, not allowed): the endpoint is down, stop the batch."""
        return self.status is None


def signers(secrets: list[str]) -> list[Webhook]:
    """The library's signer for each valid secret (made once per batch: each decodes its secret)."""
    return [Webhook(secret) for secret in secrets]


def signature(signers: list[Webhook], webhook_id: str, at: datetime, body: str) -> str:
    """`webhook-signature`: one `v1,<base64 HMAC-SHA256>` per valid secret, space-separated."""
    return " ".join(signer.sign(webhook_id, at, body) for signer in signers)


def post(url: str, webhook_id: str, body: str, signed_by: list[Webhook]) -> Outcome:
    """POST an event's `body` to `url`, signed by `signed_by`; what came back, or what went wrong."""
    at = timezone.now()
    headers = {
        "content-type": "application/json",
        "user-agent": USER_AGENT,
        "webhook-id": webhook_id,
        "webhook-timestamp": str(int(at.timestamp())),
        "webhook-signature": signature(signed_by, webhook_id, at, body),
    }
    started = time.monotonic()
    try:
        answer = client.pool(TIMEOUT).post(url, headers, body.encode(), RESPONSE_READ)
    except client.RequestFailed as failed:
        if failed.kind == "Timeout":
            return Outcome(None, _since(started), error=f"timed out after {TIMEOUT:g} s")
        return Outcome(None, _since(started), error=f"{failed.kind}: {failed}"[:255])
    # PostgreSQL's text cannot hold NUL: a binary answer must not fail the batch's record.
    text = (
        answer.body[: RESPONSE_KEPT * 4].decode("utf-8", "replace")[:RESPONSE_KEPT].replace("\x00", "\ufffd")
    )
    return Outcome(answer.status, _since(started), response=text)


def _since(started: float) -> int:
    return int((time.monotonic() - started) * 1000)


def retry_delay(attempts: int) -> float | None:
    """Seconds before the next try after `attempts` failed ones (with jitter); None: give up."""
    schedule = settings.EVENT_RETRY_SCHEDULE
    if attempts > len(schedule):
        return None
    base = float(schedule[attempts - 1])
    return base * random.uniform(1 - JITTER, 1 + JITTER)


def deliver_due(endpoint_id: int) -> int:
    """Send the endpoint's due deliveries, batch after batch, while there are any (for up to
    RUN_TIME, then it queues its successor); returns how many were delivered.

    While it runs, the endpoint's kick flag stays set, so commits meanwhile queue no other task:
    this one picks their events up, waiting LINGER after a short batch so that the next one is
    fuller. It clears the flag before it stops, then claims once more: an event committed before
    the flag went is seen by that claim, one committed after queues a task of its own.
    """
    flag = kick_key(endpoint_id)
    endpoint = EventEndpoint.objects.filter(pk=endpoint_id, enabled=True).first()
    if endpoint is None:
        cache.delete(flag)
        return 0
    delivered = 0
    started = loaded = flagged = time.monotonic()
    cache.set(flag, 1, timeout=KICK_TTL)
    while True:
        now = time.monotonic()
        if now - flagged > REFRESH:  # once a second, not once a batch: a round trip each
            cache.set(flag, 1, timeout=KICK_TTL)
            flagged = now
        if now - loaded > REFRESH:  # staff may have disabled it, rotated its secret or deleted it
            endpoint = EventEndpoint.objects.filter(pk=endpoint_id, enabled=True).first()
            loaded = now
            if endpoint is None:
                cache.delete(flag)
                return delivered
        batch = claim(endpoint)
        if not batch:
            cache.delete(flag)
            batch = claim(endpoint)
            if not batch:
                return delivered
            if not cache.add(flag, 1, timeout=KICK_TTL):  # a new task is queued: it goes on
                return delivered + send_batch(endpoint, batch)[0]
        done, carry_on = send_batch(endpoint, batch)
        delivered += done
        if not carry_on and endpoint.enabled:
            # It did not answer: no new task for it for a while (commits meanwhile find the flag
            # set); the failed delivery's own retry, and recovery, wake it up.
            cache.set(flag, 1, timeout=REST_WHEN_UNREACHABLE)
            return delivered
        if not carry_on or not endpoint.enabled:
            cache.delete(flag)
            return delivered
        if time.monotonic() - started > RUN_TIME:
            cache.delete(flag)
            kick(endpoint_id)
            return delivered
        if len(batch) < BATCH_SIZE:
            time.sleep(LINGER)


class Claimed(NamedTuple):
    """A delivery marked `sending` by a claim, with what its POST needs."""

    pk: int
    session_id: Any
    attempts: int
    webhook_id: str
    body: str


# The claim in one statement: the due rows (none held back by an earlier event of their session
# still waiting for this endpoint: a retry not due, or a claim in flight), locked, marked `sending`,
# and returned with their events' id and body. The order rule is a scalar subquery, so PostgreSQL
# runs it per candidate as an index probe of `delivery_owed_order` (endpoint, session, sequence); a
# NOT EXISTS would be turned into an anti-join whose plan, on a table whose statistics lag behind a
# backlog (an endpoint back after an outage), compared every due row with every other (a second per
# claim at 2,000 rows). Raw SQL: the same claim through the ORM (a filtered select_for_update, then
# an UPDATE of its ids) was a third of the worker's CPU under load, building and compiling the
# query at every batch (docs/event-webhooks.md, "Speed").
_CLAIM = """
WITH due AS (
    SELECT d.id FROM {delivery} d
    WHERE d.endpoint_id = %(endpoint)s AND d.state = '{pending}' AND d.next_attempt_at <= %(now)s
      AND d.sequence < COALESCE(
          (SELECT w.sequence FROM {delivery} w
           WHERE w.endpoint_id = d.endpoint_id AND w.session_id = d.session_id
             AND (w.state = '{sending}' OR (w.state = '{pending}' AND w.next_attempt_at > %(now)s))
           ORDER BY w.sequence LIMIT 1),
          %(unheld)s)
    ORDER BY d.id
    LIMIT %(limit)s
    FOR UPDATE OF d SKIP LOCKED
), claimed AS (
    UPDATE {delivery} d SET state = '{sending}', claimed_at = %(now)s
    FROM due WHERE d.id = due.id
    RETURNING d.id, d.event_id, d.session_id, d.attempts
)
SELECT claimed.id, claimed.session_id, claimed.attempts, e.webhook_id, e.body
FROM claimed JOIN {event} e ON e.id = claimed.event_id
ORDER BY claimed.id
"""


def claim(endpoint: EventEndpoint, limit: int = BATCH_SIZE) -> list[Claimed]:
    """Mark up to `limit` of the endpoint's due deliveries `sending` and return them, oldest first,
    each with its event's id and body; none whose session has an earlier event still waiting for
    this endpoint. Serialised per endpoint by an advisory lock, so two claims never split a
    session's events between them."""
    sql = _CLAIM.format(
        delivery=Delivery._meta.db_table,
        event=Event._meta.db_table,
        pending=DeliveryState.PENDING.value,
        sending=DeliveryState.SENDING.value,
    )
    params: dict[str, int | datetime] = {
        "endpoint": endpoint.pk,
        "now": timezone.now(),
        "unheld": NO_SEQUENCE,
        "limit": limit,
    }
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock(%s, %s)", [CLAIM_LOCK, endpoint.pk])
        cursor.execute(sql, params)
        return [Claimed(*row) for row in cursor.fetchall()]


def send_batch(endpoint: EventEndpoint, batch: list[Claimed]) -> tuple[int, bool]:
    """POST each claimed delivery in order and record what happened; returns (delivered, whether the
    endpoint answered well enough to go on)."""
    signed_by = signers(endpoint.signing_secrets())
    results: list[tuple[Claimed, Outcome]] = []
    held: set[object] = set()
    stop = False
    started = time.monotonic()
    for delivery in batch:
        if stop or delivery.session_id in held or time.monotonic() - started > BATCH_TIME:
            continue
        outcome = post(endpoint.url, delivery.webhook_id, delivery.body, signed_by)
        results.append((delivery, outcome))
        if not outcome.ok:
            held.add(delivery.session_id)  # its later events wait for this one
        if outcome.unreachable or outcome.status == 410:
            stop = True
    sent = {delivery.pk for delivery, _ in results}
    record_outcomes(endpoint, results, [d for d in batch if d.pk not in sent])
    return sum(1 for _, outcome in results if outcome.ok), not stop


# The attempts' log in one statement without RETURNING: bulk_create of the batch's DeliveryAttempt
# instances (building them, compiling the INSERT, reading back 100 ids) was a fifth of the worker's
# CPU per delivery (docs/event-webhooks.md, "Speed").
_LOG_ATTEMPTS = """
INSERT INTO {table} (delivery_id, attempted_at, status_code, duration_ms, response, error)
SELECT delivery_id, %s, status_code, duration_ms, response, error
FROM unnest(%s::bigint[], %s::integer[], %s::integer[], %s::text[], %s::text[])
    AS attempt (delivery_id, status_code, duration_ms, response, error)
"""


def record_outcomes(
    endpoint: EventEndpoint, results: list[tuple[Claimed, Outcome]], unsent: list[Claimed]
) -> None:
    """One transaction: the attempts' log, each delivery's new state, the endpoint's health."""
    now = timezone.now()
    soonest: float | None = None
    with transaction.atomic():
        if results:
            with connection.cursor() as cursor:
                cursor.execute(
                    _LOG_ATTEMPTS.format(table=DeliveryAttempt._meta.db_table),
                    [
                        now,
                        [delivery.pk for delivery, _ in results],
                        [outcome.status for _, outcome in results],
                        [outcome.duration_ms for _, outcome in results],
                        [outcome.response for _, outcome in results],
                        [outcome.error for _, outcome in results],
                    ],
                )
        # Conditional UPDATEs by outcome (only rows this claim marked `sending`): one for the
        # answered-2xx rows of each status, one per failed row (its own retry time), one for what was
        # not tried. Rejected: bulk_update, whose CASE per row and column was half a batch's time.
        delivered: dict[int, list[int]] = {}
        for delivery, outcome in results:
            if outcome.ok:
                assert outcome.status is not None
                delivered.setdefault(outcome.status, []).append(delivery.pk)
                continue
            delay = retry_delay(delivery.attempts + 1)
            changes: dict[str, Any] = {
                "last_status_code": outcome.status,
                "last_error": outcome.error or f"answered {outcome.status}",
            }
            if delay is None:
                changes["state"] = DeliveryState.FAILED
                log.warning("Event delivery %s to endpoint %s given up", delivery.pk, endpoint.pk)
            else:
                changes.update(state=DeliveryState.PENDING, next_attempt_at=now + timedelta(seconds=delay))
                soonest = delay if soonest is None else min(soonest, delay)
            _claimed([delivery.pk]).update(attempts=F("attempts") + 1, claimed_at=None, **changes)
        for status, ids in delivered.items():
            _claimed(ids).update(
                state=DeliveryState.DELIVERED,
                delivered_at=now,
                attempts=F("attempts") + 1,
                claimed_at=None,
                last_status_code=status,
                last_error="",
            )
        if unsent:  # not tried: due again, no attempt counted
            _claimed([d.pk for d in unsent]).update(state=DeliveryState.PENDING, claimed_at=None)
        _keep_health(endpoint, results, now)
    if soonest is not None and soonest <= COUNTDOWN_MAX:
        queue.after_commit(queue.DELIVER_EVENTS, endpoint.pk, countdown=soonest)


def _claimed(ids: list[int]) -> QuerySet[Delivery]:
    return Delivery.objects.filter(pk__in=ids, state=DeliveryState.SENDING)


def _keep_health(endpoint: EventEndpoint, results: list[tuple[Claimed, Outcome]], now: datetime) -> None:
    """410 Gone disables the endpoint at once; failing for DISABLE_AFTER disables it; a success
    clears the failure."""
    changed: list[str] = []
    if any(outcome.status == 410 for _, outcome in results):
        endpoint.enabled = False
        endpoint.disabled_reason = "Disabled: the endpoint answered 410 Gone."
        changed = ["enabled", "disabled_reason"]
    elif any(outcome.ok for _, outcome in results):
        if endpoint.failing_since is not None:
            endpoint.failing_since = None
            changed = ["failing_since"]
    elif results:
        if endpoint.failing_since is None:
            endpoint.failing_since = now
            changed = ["failing_since"]
        elif now - endpoint.failing_since >= DISABLE_AFTER:
            endpoint.enabled = False
            endpoint.disabled_reason = (
                f"Disabled: every delivery failed since {endpoint.failing_since:%Y-%m-%d %H:%M} UTC (5 days)."
            )
            changed = ["enabled", "disabled_reason"]
    if changed:
        endpoint.save(update_fields=[*changed, "updated_at"])
        if not endpoint.enabled:
            log.warning("Event endpoint %s: %s", endpoint.pk, endpoint.disabled_reason)


def recover(limit: int = 1000) -> dict[str, int]:
    """The beat task: claims whose worker vanished go back (due again), and every enabled endpoint
    with something due gets its delivery task queued (a lost task, a retry that came due)."""
    now = timezone.now()
    released = Delivery.objects.filter(state=DeliveryState.SENDING, claimed_at__lt=now - LEASE).update(
        state=DeliveryState.PENDING, claimed_at=None
    )
    due = Delivery.objects.filter(
        endpoint_id=OuterRef("pk"), state=DeliveryState.PENDING, next_attempt_at__lte=now
    )
    endpoints = list(
        EventEndpoint.objects.filter(enabled=True).filter(Exists(due)).values_list("pk", flat=True)[:limit]
    )
    for endpoint_id in endpoints:
        kick(endpoint_id, force=True)
    if released or endpoints:
        log.info("Event recovery: %s lost claim(s) released, %s endpoint(s) queued", released, len(endpoints))
    return {"released": released, "endpoints": len(endpoints)}


def resend(deliveries: QuerySet[Delivery]) -> int:
    """Send these deliveries again as soon as possible (admin's action); not those being sent now."""
    now = timezone.now()
    with transaction.atomic():
        chosen = deliveries.exclude(state=DeliveryState.SENDING)
        endpoint_ids = set(chosen.values_list("endpoint_id", flat=True))
        count = chosen.update(state=DeliveryState.PENDING, next_attempt_at=now, claimed_at=None)
        for endpoint_id in sorted(endpoint_ids):
            transaction.on_commit(lambda pk=endpoint_id: kick(pk), robust=True)  # type: ignore[misc]
    return count


def purge(batch: int = 5000) -> dict[str, int]:
    """Attempts older than EVENT_LOG_RETENTION; events that old whose deliveries are all finished
    (with their deliveries); deliveries of endpoints that are gone."""
    cutoff = timezone.now() - timedelta(seconds=settings.EVENT_LOG_RETENTION)
    attempts = _in_batches(DeliveryAttempt.objects.filter(attempted_at__lt=cutoff), batch)
    owed = Delivery.objects.filter(
        event_id=OuterRef("pk"), state__in=[DeliveryState.PENDING, DeliveryState.SENDING]
    )
    events = _in_batches(Event.objects.filter(created_at__lt=cutoff).exclude(Exists(owed)), batch)
    orphans = _in_batches(
        Delivery.objects.exclude(Exists(EventEndpoint.objects.filter(pk=OuterRef("endpoint_id")))), batch
    )
    return {"attempts": attempts, "events": events, "orphan_deliveries": orphans}


def _in_batches(rows: QuerySet, batch: int) -> int:  # type: ignore[type-arg]
    """Delete `rows` a batch at a time; returns how many this call deleted. Each batch is claimed
    with `FOR UPDATE SKIP LOCKED` and counted by what its DELETE removed, so two purges at once
    never delete (or count) a row twice."""
    total = 0
    while True:
        with transaction.atomic():
            ids = list(rows.select_for_update(skip_locked=True).values_list("pk", flat=True)[:batch])
            if not ids:
                return total
            _, deleted = rows.model.objects.filter(pk__in=ids).delete()
        total += deleted.get(rows.model._meta.label, 0)
