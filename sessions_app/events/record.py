"""Writing events: the outbox half. Every change that subscribers hear of calls `record_events` inside
the transaction that makes the change, so an event exists exactly when its change committed.

For each event it allocates the session's next `sequence` (an UPDATE of the session's counter: the
row lock it takes orders concurrent changes of one session, and a rollback takes the number back,
so the numbers have no gaps), stores the payload as it will be sent, and one `Delivery` per
endpoint that wants the type; once the transaction commits, the endpoints' delivery tasks are
queued. With no enabled endpoint wanting the type nothing is written and no query is made: the
endpoints are read from this process's cache (`ENDPOINT_CACHE_TTL`), like the channels.

The reuse rule's function takes its message's numbers itself, in the session row it writes anyway,
and returns the session and contact the payload shows: the rule passes both on (`numbered_to`,
`session`), so an inbound message's events cost one statement, the INSERT of the events and their
deliveries (docs/event-webhooks.md).
"""

from __future__ import annotations

import contextlib
import functools
import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.core.cache import cache, caches
from django.core.serializers.json import DjangoJSONEncoder
from django.db import connection, transaction
from django.db.models.signals import post_delete, post_save
from django.utils import timezone

from sessions_app.api.representations import MessageSerializer, SessionSerializer
from sessions_app.delivery import queue
from sessions_app.events.models import Delivery, Event, EventEndpoint
from sessions_app.models import Message, Session

ENDPOINT_CACHE_TTL = timedelta(seconds=5)
_CACHE_KEY = "events:endpoints"
# While set, a delivery task for the endpoint is queued or running: another is not needed (the task
# keeps it set while it runs, and clears it before its last claim; sessions_app/events/dispatch.py).
# Only with a shared cache (Redis). Expires on its own when a worker dies with it set.
KICK_TTL = 5


@dataclass(frozen=True)
class EventSpec:
    """One event to record: its type, the message it is about (message events), and what else
    its `data` holds (`from`, `to`, `actor` of a status change)."""

    type: str
    message: Message | None = None
    extra: dict[str, Any] = field(default_factory=dict)


# The enabled endpoints as (id, event types).
Endpoints = list[tuple[int, list[str]]]


def enabled_endpoints() -> Endpoints:
    """The enabled endpoints as (id, event types), from this process's cache while fresh. A change
    that counts its events before recording them counts and records with one such list, so the two
    agree even if the cache is refreshed in between (the reuse rule)."""
    store = caches["process"]
    entry: tuple[datetime, Endpoints] | None = store.get(_CACHE_KEY)
    now = timezone.now()
    if entry is not None and timedelta(0) <= now - entry[0] < ENDPOINT_CACHE_TTL:
        return entry[1]
    rows = [
        (pk, list(types))
        for pk, types in EventEndpoint.objects.filter(enabled=True).values_list("pk", "event_types")
    ]
    store.set(_CACHE_KEY, (now, rows), None)
    return rows


def wanting(endpoints: Endpoints, event_type: str) -> list[int]:
    """The ids of `endpoints` that want `event_type`."""
    return [pk for pk, types in endpoints if "*" in types or event_type in types]


def subscribers(event_type: str) -> list[int]:
    """The ids of the enabled endpoints that want `event_type`."""
    return wanting(enabled_endpoints(), event_type)


def wanted(*event_types: str, endpoints: Endpoints | None = None) -> bool:
    """Whether an endpoint wants one of `event_types` (of `endpoints`: by default the enabled ones)."""
    if endpoints is None:
        endpoints = enabled_endpoints()  # one read of the process cache, whatever the number of types
    return any(wanting(endpoints, event_type) for event_type in event_types)


def forget_endpoints(**kwargs: Any) -> None:
    caches["process"].delete(_CACHE_KEY)


post_save.connect(forget_endpoints, sender=EventEndpoint, dispatch_uid="events.forget_endpoints_on_save")
post_delete.connect(forget_endpoints, sender=EventEndpoint, dispatch_uid="events.forget_endpoints_on_delete")


def recording(
    *event_types: str, endpoints: Endpoints | None = None
) -> contextlib.AbstractContextManager[Any]:
    """A transaction around a change that would otherwise run in autocommit (the reuse rule's one
    statement), when one of `event_types` has a subscriber (in `endpoints`, by default the enabled
    ones): its events must commit with it."""
    if connection.in_atomic_block or not wanted(*event_types, endpoints=endpoints):
        return contextlib.nullcontext()
    return transaction.atomic()


@functools.cache
def _session_shown() -> SessionSerializer:
    """One serializer instance per process, reused: building a ModelSerializer's fields is most of
    its cost (about 1 ms each time), and `to_representation` only reads them."""
    return SessionSerializer()


@functools.cache
def _message_shown() -> MessageSerializer:
    return MessageSerializer()


def _body(event_type: str, at: datetime, data: dict[str, Any]) -> str:
    return json.dumps({"type": event_type, "timestamp": at, "data": data}, cls=DjangoJSONEncoder)


def _next_sequences(session_id: Any, count: int) -> int:
    """Take `count` numbers from the session's counter; returns the last (locks the session's row)."""
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {Session._meta.db_table} SET event_sequence = event_sequence + %s "  # noqa: S608
            "WHERE id = %s RETURNING event_sequence",
            [count, session_id],
        )
        row = cursor.fetchone()
    if row is None:
        raise Session.DoesNotExist(f"no session {session_id}")
    return int(row[0])


def record_events(
    session_id: Any,
    specs: Sequence[EventSpec],
    *,
    session: Session | None = None,
    endpoints: Endpoints | None = None,
    numbered_to: int | None = None,
) -> list[Event]:
    """Record `specs`, in that order, as the next events of session `session_id`. Call it inside the
    change's transaction. Returns the events stored (none when nobody subscribes to their types).

    `session`: the session as the change left it, with its contact, when the caller has it (else it
    is read). `endpoints`: the subscribers to record for (by default the enabled endpoints).
    `numbered_to`: the change took the numbers itself (the reuse rule's function), one per spec
    with a subscriber in `endpoints`, and this is the last; else they are taken here."""
    if endpoints is None:
        endpoints = enabled_endpoints()
    targets = [(spec, wanting(endpoints, spec.type)) for spec in specs]
    targets = [(spec, endpoint_ids) for spec, endpoint_ids in targets if endpoint_ids]
    if not targets:
        return []
    assert connection.in_atomic_block, "record_events runs inside the change's transaction"
    last = _next_sequences(session_id, len(targets)) if numbered_to is None else numbered_to
    if session is None:
        session = Session.objects.select_related("contact").get(pk=session_id)
    shown = _session_shown().to_representation(session)
    now = timezone.now()
    events: list[Event] = []
    for number, (spec, _) in enumerate(targets, start=last - len(targets) + 1):
        data: dict[str, Any] = {"session": shown}
        if spec.message is not None:
            data["message"] = _message_shown().to_representation(spec.message)
        data.update(spec.extra)
        data["sequence"] = number
        events.append(_event(session_id, number, spec.type, now, data))
    _store(events, [endpoint_ids for _, endpoint_ids in targets])
    return events


def record_status_changes(
    moved: Sequence[tuple[Any, int]], from_status: str, to_status: str, actor: str
) -> int:
    """The sweep's batch form: `moved` are (session id, sequence) pairs whose sequence the batch's
    statement already took; one `session.status_changed` event each. Returns how many."""
    endpoint_ids = subscribers("session.status_changed")
    if not moved or not endpoint_ids:
        return 0
    sessions = Session.objects.select_related("contact").in_bulk([pk for pk, _ in moved])
    now = timezone.now()
    events = []
    for pk, number in moved:
        data = {
            "session": _session_shown().to_representation(sessions[pk]),
            "from": from_status,
            "to": to_status,
            "actor": actor,
            "sequence": number,
        }
        events.append(_event(pk, number, "session.status_changed", now, data))
    _store(events, [endpoint_ids] * len(events))
    return len(events)


def _event(session_id: Any, number: int, event_type: str, at: datetime, data: dict[str, Any]) -> Event:
    return Event(
        session_id=session_id,
        sequence=number,
        type=event_type,
        webhook_id=f"evt_{uuid.uuid4().hex}",
        body=_body(event_type, at, data),
        created_at=at,
    )


# The events and their deliveries in one statement (one round trip; a batch of the sweep's holds
# thousands): each event's deliveries go to the endpoints subscribed to its type. The rows come as
# two JSON documents, not as arrays: psycopg writes a text array's elements escaping each quote
# with a regular expression's substitution in Python, a few hundred per payload (with 5 endpoints
# 3.4 of an inbound message's 12.1 M instructions, bench/ingest_cpu.py --instructions), where
# `json.dumps` escapes them in C.
_INSERT = """
WITH event AS (
    INSERT INTO {event} (session_id, sequence, type, webhook_id, body, created_at)
    SELECT * FROM json_to_recordset(%s::json)
        AS e (session_id uuid, sequence bigint, type text, webhook_id text, body text, created_at timestamptz)
    RETURNING id, session_id, sequence, type, created_at
)
INSERT INTO {delivery} (event_id, endpoint_id, session_id, sequence, state, attempts, next_attempt_at,
                        created_at, last_error)
SELECT event.id, wanted.endpoint_id, event.session_id, event.sequence, 'pending', 0, event.created_at,
       event.created_at, ''
FROM event
JOIN json_to_recordset(%s::json) AS wanted (type text, endpoint_id bigint) ON wanted.type = event.type
"""


def _store(events: list[Event], endpoint_ids: list[list[int]]) -> None:
    by_type = {event.type: ids for event, ids in zip(events, endpoint_ids, strict=True)}
    pairs = [(event_type, pk) for event_type, ids in by_type.items() for pk in ids]
    sql = _INSERT.format(event=Event._meta.db_table, delivery=Delivery._meta.db_table)
    rows = [
        {
            "session_id": str(event.session_id),
            "sequence": event.sequence,
            "type": event.type,
            "webhook_id": event.webhook_id,
            "body": event.body,
            "created_at": event.created_at.isoformat(),
        }
        for event in events
    ]
    wanted = [{"type": event_type, "endpoint_id": pk} for event_type, pk in pairs]
    with connection.cursor() as cursor:
        cursor.execute(sql, [json.dumps(rows), json.dumps(wanted)])
    endpoints = sorted({pk for _, pk in pairs})
    transaction.on_commit(lambda: kick_all(endpoints), robust=True)


def kick_key(endpoint_id: int) -> str:
    return f"events:kick:{endpoint_id}"


def kick(endpoint_id: int, *, force: bool = False) -> None:
    """Queue the endpoint's delivery task unless one is queued or running (shared cache only: with
    each process's own memory there is no telling, so it is always queued). `force`: whatever the
    flag says (the recovery task: a flag left by a worker that died must not hold events back)."""
    if force:
        cache.set(kick_key(endpoint_id), 1, timeout=KICK_TTL)
    elif settings.REDIS_URL and not cache.add(kick_key(endpoint_id), 1, timeout=KICK_TTL):
        return
    queue.enqueue(queue.DELIVER_EVENTS, endpoint_id)


def kick_all(endpoint_ids: list[int]) -> None:
    """`kick` each endpoint, reading their flags first in one round trip: under load their tasks
    are running and every flag is set, so a commit costs one cache read, not one per endpoint (each
    Django cache call builds a Redis client: 0.15 ms of CPU; five endpoints were a tenth of an
    inbound message's CPU, `bench/ingest_cpu.py --event-endpoints 5`, docs/event-webhooks.md)."""
    if settings.REDIS_URL:
        flagged = cache.get_many([kick_key(pk) for pk in endpoint_ids])
        endpoint_ids = [pk for pk in endpoint_ids if kick_key(pk) not in flagged]
    for endpoint_id in endpoint_ids:
        kick(endpoint_id)
