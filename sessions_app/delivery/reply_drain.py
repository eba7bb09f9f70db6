"""The reply drain: how an owed reply reaches a worker without a task queued per message.

An inbound message that expects an answer is stored `owed` (ingest/rule.py), and that row is the
work: a drain task (`drain_replies_task`) claims owed messages, oldest first, with
`SELECT … FOR UPDATE SKIP LOCKED` and answers them one by one, so two drains, or a drain and a
`produce_reply_task` of the recovery, never answer one message twice (the claim is the conditional
UPDATE `replies.claim` makes, and the reply's one-to-one link refuses a second reply anyway).

Once the message commits, `reply_owed` makes sure a drain will look: it queues one (Celery, on
commit) unless a running drain has *promised* to claim again at or after a time still ahead.
A drain writes its promise into the shared cache (one key per slot, `REPLY_DRAINS` slots) and keeps
it: it stops only after a claim that began at or after its latest promise found nothing, so a
message committed before the promise (less `MARGIN` for clocks that differ between machines) is
seen by that claim. Each web process keeps the latest promise it read, so under load a commit reads
nothing at all: one cache read per process per `REPLY_DRAIN_LINGER_MS`, instead of one Celery
publish per message. A drain that finds more waiting than the message it took starts another, up to
`REPLY_DRAINS`, so a slow agent does not answer one message at a time; after `RUN_TIME` with work
to do a drain hands over to a successor queued behind the tasks queued meanwhile. Without a shared
cache (no `REDIS_URL`) no promise can be seen: every commit queues a drain, and a drain stops at its
first empty claim.

The figure it buys: an inbound SMS went from 4.98 to 3.89 M instructions (22 % fewer,
`bench/ingest_cpu.py --instructions --requests 200`) and the ingest ratio from 0.41 to about 0.45
(`bench/ingest.py --rounds 5`, warm against warm); docs/tasks.md, "The reply drain", and
docs/benchmarks.md.
A message whose drain was lost (broker down, worker killed) is queued again by `recover_owed_work`.
"""

from __future__ import annotations

import logging
import math
import time

from django.conf import settings
from django.core.cache import cache
from django.db import transaction

from sessions_app.delivery import queue, replies
from sessions_app.models import Message, ReplyState

log = logging.getLogger(__name__)

# Seconds a promise must still have to run for a commit to rely on it: the clocks of the machines
# (NTP keeps them within milliseconds) may differ by less than this.
MARGIN = 0.15
# An idle drain claims this often until its promise is kept.
POLL = 0.02
# A drain with work to do hands over to a successor after this many seconds: the successor queues
# behind what was queued meanwhile (the replies' sends), and worker processes recycle.
RUN_TIME = 5.0
# A drain looks for a free slot to start another drain at most this often while it has a backlog.
SPAWN_EVERY = 0.25

# The latest promise this process has read: until it is MARGIN from running out, commits read nothing.
_promised_until = 0.0


def slot_key(slot: int) -> str:
    return f"replies:drain:{slot}"


def _linger() -> float:
    """Seconds a drain promises to go on claiming: 0 without a shared cache, where no one could see it."""
    return settings.REPLY_DRAIN_LINGER_MS / 1000 if settings.REDIS_URL else 0.0


def _promise(slot: int, until: float) -> None:
    """Write a promise to claim again at or after `until` (epoch seconds) under `slot`."""
    cache.set(slot_key(slot), until, timeout=math.ceil(max(until - time.time(), 0) + MARGIN) + 1)


def forget_promises() -> None:
    """Drop this process's memory of drains' promises (tests that write promises of their own)."""
    global _promised_until
    _promised_until = 0.0


def _start_drain(slots: dict[str, float], now: float) -> None:
    """Queue a drain under a free slot (the first, if none is free), promising for it: it will start
    after `now` and keep claiming for at least the linger after it starts."""
    free = [slot for slot in range(settings.REPLY_DRAINS) if slot_key(slot) not in slots]
    slot = free[0] if free else 0
    linger = _linger()
    if linger:
        _promise(slot, now + linger)
    if not queue.enqueue(queue.DRAIN_REPLIES, slot):
        if linger:
            cache.delete(slot_key(slot))  # no drain is coming: recovery answers the message
    elif linger:
        global _promised_until
        _promised_until = max(_promised_until, now + linger)


def reply_owed() -> None:
    """A message owed a reply has committed: make sure a drain will claim it."""
    global _promised_until
    now = time.time()
    if now < _promised_until - MARGIN:
        return
    slots: dict[str, float] = {}
    if settings.REDIS_URL:
        slots = cache.get_many([slot_key(slot) for slot in range(settings.REPLY_DRAINS)])
        latest = max(slots.values(), default=0.0)
        if now < latest - MARGIN:
            _promised_until = latest
            return
    _start_drain(slots, now)


def _claim_next() -> tuple[int, bool] | None:
    """Claim the oldest owed message no one holds; returns its id and whether another is waiting.

    Messages waiting out a retry's backoff (attempted before) are left to their own retry task."""
    with transaction.atomic():
        ids = list(
            Message.objects.filter(reply_state=ReplyState.OWED, reply_attempts=0)
            .order_by("created_at")
            .select_for_update(skip_locked=True)
            .values_list("pk", flat=True)[:2]
        )
        if not ids or not replies.claim(ids[0]):
            return None
    return ids[0], len(ids) > 1


def _spawn(now: float) -> None:
    """Another message is waiting while this drain answers one: start a drain under a free slot."""
    if not _linger():
        return  # no promises, so every commit queues a drain already
    slots = cache.get_many([slot_key(slot) for slot in range(settings.REPLY_DRAINS)])
    if len(slots) < settings.REPLY_DRAINS:
        _start_drain(slots, now)


def _hand_over(slot: int, linger: float) -> bool:
    """Queue this drain's successor (it keeps this drain's promise: it starts later and lingers as
    long); False when the broker cannot take it."""
    if linger:
        _promise(slot, time.time() + linger)
    return queue.enqueue(queue.DRAIN_REPLIES, slot)


def drain_replies(slot: int, *, run_time: float = RUN_TIME) -> int:
    """Answer owed messages until a claim begun after this drain's latest promise finds none;
    returns how many it answered. After `run_time` seconds with work to do it queues a successor and
    stops, so tasks queued meanwhile (the replies' sends) get the worker process in their turn."""
    linger = _linger()
    started = time.time()
    promised = started + linger
    if linger:
        _promise(slot, promised)
    answered = 0
    spawned = 0.0
    while True:
        begun = time.time()
        claimed = _claim_next()
        if claimed is None:
            if begun >= promised:
                if linger:
                    cache.delete(slot_key(slot))
                return answered
            time.sleep(min(POLL, promised - begun))
            continue
        inbound_id, more = claimed
        if linger and begun > promised - linger / 2:
            promised = begun + linger  # one cache write per half linger, not one per message
            _promise(slot, promised)
        if more and begun - spawned > SPAWN_EVERY:
            spawned = begun
            _spawn(begun)
        try:
            replies.answer_claimed(inbound_id)
        except replies.ReplyDeferred as exc:
            queue.enqueue(queue.PRODUCE_REPLY, inbound_id, countdown=queue.backoff(exc.attempt))
        except Exception:
            log.exception("Reply to message %s failed; recovery will queue it again", inbound_id)
        answered += 1
        if time.time() - started > run_time:
            if _hand_over(slot, linger):
                return answered
            started = time.time()  # the broker is down: go on here
